//! The one integration-test binary: every module calls tern through its exported C
//! functions, against real local servers (nginx from scripts/testenv.sh) and, for
//! faults nginx cannot make, in-process servers.

mod common;
mod cookies;
mod embedding;
mod faults;
mod forms;
mod http;
mod lifecycle;
mod logging;
mod options;
mod proxy;
mod static_checks;
mod ws;
mod ws_faults;
mod ws_stress;
