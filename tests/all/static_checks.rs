//! Source, header and binary checks: the rules of the C boundary (CONVENTIONS.md,
//! "Rules of the boundary" and "Checks worth automating") checked on the source with
//! `syn`, on the built library with `nm`, on the header with a C and a C++ compiler,
//! and on the dependency tree with `cargo tree`.
//!
//! Every check is a function over text (or a directory) that returns *all* offenders;
//! the small tests at the end feed each one a bad input and watch it fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use syn::visit::Visit;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    manifest_dir().join("include/tern.h")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(manifest_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether `word` occurs in `text` as a whole identifier.
fn contains_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w == word)
}

fn bullets<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    items.into_iter().map(|s| format!("\n  - {s}")).collect()
}

/// `Ok` when both sets are equal, else a message listing both differences.
fn same_names(
    left_label: &str,
    left: &BTreeSet<String>,
    right_label: &str,
    right: &BTreeSet<String>,
) -> Result<(), String> {
    let only_left: Vec<_> = left.difference(right).collect();
    let only_right: Vec<_> = right.difference(left).collect();
    if only_left.is_empty() && only_right.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{left_label} ({}) and {right_label} ({}) differ.\n\
         {} only in {left_label}:{}\n\
         {} only in {right_label}:{}",
        left.len(),
        right.len(),
        only_left.len(),
        bullets(only_left),
        only_right.len(),
        bullets(only_right),
    ))
}

// ---------------------------------------------------------------------------------
// 1. The boundary lint over the Rust source.
// ---------------------------------------------------------------------------------

/// What the boundary lint found.
#[derive(Default, Debug)]
struct BoundaryReport {
    /// Names of the exported (`no_mangle`) functions, in source order.
    exports: Vec<String>,
    /// How many of them are in src/ffi.
    ffi_exports: usize,
    /// One line per broken rule: `file: item: problem`.
    offenders: Vec<String>,
}

/// Lints one file. `in_ffi` is false for files outside src/ffi, which must export
/// nothing.
fn check_boundary(file: &str, src: &str, in_ffi: bool, report: &mut BoundaryReport) {
    match syn::parse_file(src) {
        Ok(ast) => BoundaryVisitor {
            file,
            in_ffi,
            report,
        }
        .visit_file(&ast),
        Err(e) => report
            .offenders
            .push(format!("{file}: does not parse with syn: {e}")),
    }
}

/// Lints every file under src/.
fn boundary_report() -> BoundaryReport {
    let src = manifest_dir().join("src");
    let ffi = src.join("ffi");
    let mut report = BoundaryReport::default();
    for path in rust_files(&src) {
        check_boundary(
            &relative(&path),
            &read(&path),
            path.starts_with(&ffi),
            &mut report,
        );
    }
    report
}

struct BoundaryVisitor<'a> {
    file: &'a str,
    in_ffi: bool,
    report: &'a mut BoundaryReport,
}

impl<'ast> Visit<'ast> for BoundaryVisitor<'_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.check_fn(&f.attrs, &f.sig, &f.block);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.check_fn(&f.attrs, &f.sig, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_item_macro(&mut self, m: &'ast syn::ItemMacro) {
        self.check_macro(&m.mac, m.ident.as_ref());
        syn::visit::visit_item_macro(self, m);
    }

    fn visit_impl_item_macro(&mut self, m: &'ast syn::ImplItemMacro) {
        self.check_macro(&m.mac, None);
        syn::visit::visit_impl_item_macro(self, m);
    }
}

/// How an attribute list exports its item, if it does.
enum Export {
    NoMangle,
    ExportName,
}

fn export_kind(attrs: &[syn::Attribute]) -> Option<Export> {
    attrs.iter().find_map(|a| {
        let words = match &a.meta {
            syn::Meta::Path(p) => p.get_ident().map(|i| i.to_string()),
            // `#[export_name = "..."]`
            syn::Meta::NameValue(nv) => nv.path.get_ident().map(|i| i.to_string()),
            // `#[unsafe(no_mangle)]`, `#[unsafe(export_name = "...")]`
            syn::Meta::List(l) if l.path.is_ident("unsafe") => Some(l.tokens.to_string()),
            syn::Meta::List(_) => None,
        }?;
        if contains_word(&words, "no_mangle") {
            Some(Export::NoMangle)
        } else if contains_word(&words, "export_name") {
            Some(Export::ExportName)
        } else {
            None
        }
    })
}

/// The text of the `///` docs, one attribute per line.
fn doc_text(attrs: &[syn::Attribute]) -> String {
    attrs
        .iter()
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The doc sections every export needs, in the order CONVENTIONS.md gives.
const DOC_SECTIONS: [&[&str]; 4] = [
    &["Ownership:"],
    &["Thread safety:", "Callbacks:"],
    &["Errors:"],
    &["Since:"],
];

fn doc_problems(docs: &str) -> Vec<String> {
    if docs.trim().is_empty() {
        return vec!["has no `///` docs".to_owned()];
    }
    let lines: Vec<&str> = docs.lines().map(str::trim).collect();
    let is_section = |l: &str| {
        DOC_SECTIONS
            .iter()
            .flat_map(|s| s.iter())
            .any(|p| l.starts_with(p))
    };
    let mut problems = Vec::new();
    if lines
        .iter()
        .find(|l| !l.is_empty())
        .is_some_and(|l| is_section(l))
    {
        problems.push("docs start with a section instead of a one-line summary".to_owned());
    }
    let mut positions = Vec::new();
    for labels in DOC_SECTIONS {
        match lines
            .iter()
            .position(|l| labels.iter().any(|p| l.starts_with(p)))
        {
            Some(i) => positions.push(i),
            None => problems.push(format!(
                "docs lack a line starting with {}",
                labels
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
        }
    }
    if positions.windows(2).any(|w| w[0] > w[1]) {
        problems.push(
            "doc sections are out of order (want Ownership, Thread safety or Callbacks, \
             Errors, Since)"
                .to_owned(),
        );
    }
    problems
}

fn stmt_macro(stmt: &syn::Stmt) -> Option<&syn::Macro> {
    match stmt {
        syn::Stmt::Macro(m) => Some(&m.mac),
        syn::Stmt::Expr(syn::Expr::Macro(m), _) => Some(&m.mac),
        _ => None,
    }
}

fn macro_name(mac: &syn::Macro) -> String {
    mac.path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

fn body_problem(block: &syn::Block) -> Option<String> {
    let n = block.stmts.len();
    let Some(first) = block.stmts.first() else {
        return Some("body is empty: it must be one `ffi_boundary! { ... }`".to_owned());
    };
    let boundary = stmt_macro(first).is_some_and(|m| macro_name(m) == "ffi_boundary");
    if boundary && n == 1 {
        return None;
    }
    if boundary {
        return Some(format!(
            "body has {n} statements: everything after `ffi_boundary!` runs outside the \
             panic boundary"
        ));
    }
    let what = match first {
        syn::Stmt::Local(_) => "a `let` statement".to_owned(),
        syn::Stmt::Item(_) => "an item".to_owned(),
        s => match stmt_macro(s) {
            Some(m) => format!("`{}!`", macro_name(m)),
            None => match s {
                syn::Stmt::Expr(syn::Expr::Unsafe(_), _) => "an `unsafe` block".to_owned(),
                syn::Stmt::Expr(syn::Expr::Block(_), _) => "a plain block".to_owned(),
                _ => "an expression".to_owned(),
            },
        },
    };
    Some(format!(
        "body must be exactly one `ffi_boundary! {{ ... }}`, but it starts with {what}"
    ))
}

fn abi_name(abi: Option<&syn::Abi>) -> Option<Option<String>> {
    abi.map(|a| a.name.as_ref().map(|n| n.value()))
}

/// What is wrong with a parameter or return type of an export (raw pointers only;
/// callbacks as `Option<extern "C" fn>`).
fn type_problems(ty: &syn::Type) -> Vec<String> {
    let mut out = Vec::new();
    walk_type(ty, true, false, &mut out);
    out.dedup();
    out
}

fn walk_type(ty: &syn::Type, top: bool, in_option: bool, out: &mut Vec<String>) {
    let is = if top { "is" } else { "contains" };
    match ty {
        syn::Type::Reference(_) => {
            out.push(format!("{is} a reference (`&T`): take a raw pointer"));
        }
        syn::Type::BareFn(f) => {
            if !in_option {
                out.push(format!(
                    "{is} a bare `fn` pointer: use `Option<unsafe extern \"C\" fn(..)>` so C \
                     can pass NULL"
                ));
            }
            if abi_name(f.abi.as_ref()) != Some(Some("C".to_owned())) {
                out.push(format!("{is} a fn pointer that is not `extern \"C\"`"));
            }
            for arg in &f.inputs {
                walk_type(&arg.ty, false, false, out);
            }
            if let syn::ReturnType::Type(_, t) = &f.output {
                walk_type(t, false, false, out);
            }
        }
        syn::Type::Path(p) => {
            if let Some(q) = &p.qself {
                walk_type(&q.ty, false, false, out);
            }
            for seg in &p.path.segments {
                if seg.ident == "Box" {
                    out.push(format!("{is} a `Box<..>`: take a raw pointer"));
                }
                if let syn::PathArguments::AngleBracketed(args) = &seg.arguments {
                    for arg in &args.args {
                        if let syn::GenericArgument::Type(t) = arg {
                            walk_type(t, false, seg.ident == "Option", out);
                        }
                    }
                }
            }
        }
        syn::Type::Paren(p) => walk_type(&p.elem, top, in_option, out),
        syn::Type::Group(g) => walk_type(&g.elem, top, in_option, out),
        syn::Type::Ptr(p) => walk_type(&p.elem, false, false, out),
        syn::Type::Array(a) => walk_type(&a.elem, false, false, out),
        syn::Type::Slice(s) => walk_type(&s.elem, false, false, out),
        syn::Type::Tuple(t) => {
            for e in &t.elems {
                walk_type(e, false, false, out);
            }
        }
        _ => {}
    }
}

impl BoundaryVisitor<'_> {
    fn offend(&mut self, item: &str, problem: impl std::fmt::Display) {
        self.report
            .offenders
            .push(format!("{}: {item}: {problem}", self.file));
    }

    fn check_fn(&mut self, attrs: &[syn::Attribute], sig: &syn::Signature, block: &syn::Block) {
        let name = sig.ident.to_string();
        let item = format!("`{name}`");
        match export_kind(attrs) {
            None => return,
            Some(Export::ExportName) => {
                self.offend(
                    &item,
                    "exported with `export_name`: use `#[no_mangle]` so the symbol is the \
                     Rust name cbindgen writes into the header",
                );
                return;
            }
            Some(Export::NoMangle) => {}
        }
        let mut problems: Vec<String> = Vec::new();
        if !self.in_ffi {
            problems.push("exported outside src/ffi (the C ABI lives in src/ffi only)".into());
        }
        if !name.starts_with("tern_") {
            problems.push("name does not start with `tern_`".into());
        }
        match abi_name(sig.abi.as_ref()) {
            Some(Some(abi)) if abi == "C" => {}
            Some(Some(abi)) => {
                problems.push(format!("ABI is `extern \"{abi}\"`, not `extern \"C\"`"))
            }
            Some(None) => problems.push("ABI is a bare `extern`: write `extern \"C\"`".into()),
            None => problems.push("is not `extern \"C\"`".into()),
        }
        problems.extend(doc_problems(&doc_text(attrs)));
        problems.extend(body_problem(block));
        for input in &sig.inputs {
            match input {
                syn::FnArg::Receiver(_) => {
                    problems.push("takes `self`: exported functions take raw pointers".into())
                }
                syn::FnArg::Typed(pt) => {
                    let what = match &*pt.pat {
                        syn::Pat::Ident(i) => format!("parameter `{}`", i.ident),
                        _ => "a parameter".to_owned(),
                    };
                    for p in type_problems(&pt.ty) {
                        problems.push(format!("{what} {p}"));
                    }
                }
            }
        }
        if let syn::ReturnType::Type(_, ty) = &sig.output {
            for p in type_problems(ty) {
                problems.push(format!("return type {p}"));
            }
        }
        for p in problems {
            self.offend(&item, p);
        }
        if self.in_ffi {
            self.report.ffi_exports += 1;
        }
        self.report.exports.push(name);
    }

    fn check_macro(&mut self, mac: &syn::Macro, ident: Option<&syn::Ident>) {
        let tokens = mac.tokens.to_string();
        if !contains_word(&tokens, "no_mangle") && !contains_word(&tokens, "export_name") {
            return;
        }
        if mac.path.is_ident("macro_rules") {
            let name = ident.map(|i| i.to_string()).unwrap_or_default();
            self.offend(
                &format!("`macro_rules! {name}`"),
                "defines an exported (`no_mangle`) item: cbindgen cannot see items made by \
                 macros, so write every export out",
            );
        } else {
            self.offend(
                &format!("`{}!`", macro_name(mac)),
                "is invoked with an exported (`no_mangle`) item inside: cbindgen cannot see \
                 items made by macros, so write every export out",
            );
        }
    }
}

#[test]
fn ffi_functions_follow_the_boundary_rules() {
    let report = boundary_report();
    assert!(
        report.offenders.is_empty(),
        "{} broken boundary rule(s) (CONVENTIONS.md, \"Rules of the boundary\"):{}",
        report.offenders.len(),
        bullets(&report.offenders)
    );
    assert!(
        report.ffi_exports >= 30,
        "only {} exported functions found in src/ffi ({:?}); expected at least 30: is the \
         lint still looking at the right files?",
        report.ffi_exports,
        report.exports
    );
}

// ---------------------------------------------------------------------------------
// 2. The built library's symbols against the header.
// ---------------------------------------------------------------------------------

/// `src` with C comments and the contents of string and character literals removed.
fn strip_c_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    if c == '\n' {
                        out.push('\n');
                    }
                    prev = c;
                }
                out.push(' ');
            }
            '"' | '\'' => {
                out.push(c);
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Functions a C header declares: every identifier starting with `tern_` that is
/// immediately followed by `(`, outside comments and literals.
fn header_functions(header: &str) -> BTreeSet<String> {
    let code = strip_c_comments(header);
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let ident = &code[start..i];
        if ident.starts_with("tern_") && bytes.get(i) == Some(&b'(') {
            names.insert(ident.to_owned());
        }
    }
    names
}

/// Global text symbols (type `T`) in `nm` output.
fn nm_text_symbols(nm: &str) -> BTreeSet<String> {
    nm.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().rev();
            let name = fields.next()?;
            let kind = fields.next()?;
            (kind == "T").then(|| name.split('@').next().unwrap_or(name).to_owned())
        })
        .collect()
}

/// The cdylib cargo built next to this test binary (target/<profile>/deps), or the
/// copy `cargo build` puts in target/<profile>.
#[cfg(target_os = "linux")]
fn shared_library() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test binary's directory");
    let profile = deps.parent().expect("the profile directory");
    let candidates = [deps.join("libtern.so"), profile.join("libtern.so")];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "libtern.so is missing (looked for {} and {}): run `cargo build` first",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

#[cfg(target_os = "linux")]
#[test]
fn exported_symbols_match_the_header() {
    let lib = shared_library();
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .unwrap_or_else(|e| panic!("cannot run nm (binutils): {e}"));
    assert!(
        nm.status.success(),
        "nm -D --defined-only {} failed:\n{}",
        lib.display(),
        stderr(&nm)
    );
    let symbols = nm_text_symbols(&stdout(&nm));
    let declared = header_functions(&read(&header_path()));
    assert!(
        !declared.is_empty(),
        "no `tern_...(` declarations found in include/tern.h"
    );
    if let Err(e) = same_names(
        &format!("the symbols exported by {}", lib.display()),
        &symbols,
        "the functions declared in include/tern.h",
        &declared,
    ) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------
// 3. The header compiles as C11 and C++17, included twice.
// ---------------------------------------------------------------------------------

/// Compiles a probe that includes `dir/header` twice and takes the address of every
/// function in `functions`, as C11 and as C++17, with warnings as errors. `top` goes
/// at file scope, `body` inside a function. Returns one message per failing compiler.
fn compile_header(
    tag: &str,
    dir: &Path,
    header: &str,
    functions: &BTreeSet<String>,
    top: &str,
    body: &str,
) -> Vec<String> {
    let tmp = std::env::temp_dir().join(format!("tern-static-checks-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let addresses: String = functions
        .iter()
        .map(|f| format!("        (void (*)(void))&{f},\n"))
        .collect();
    let probe = format!(
        "/* Written by tests/all/static_checks.rs. */\n\
         #include \"{header}\"\n\
         #include \"{header}\"\n\
         {top}\n\
         int tern_header_probe(void);\n\
         int tern_header_probe(void) {{\n\
         \x20   void (*const functions[])(void) = {{\n\
         {addresses}\
         \x20       (void (*)(void))0,\n\
         \x20   }};\n\
         {body}\n\
         \x20   return (int)(sizeof functions / sizeof functions[0]);\n\
         }}\n"
    );
    let file = tmp.join("probe.c");
    std::fs::write(&file, &probe).expect("write probe.c");
    let compilers: [(&str, &[&str]); 2] =
        [("cc", &["-std=c11"]), ("c++", &["-std=c++17", "-x", "c++"])];
    let mut failures = Vec::new();
    for (compiler, lang) in compilers {
        let mut cmd = Command::new(compiler);
        cmd.args(lang)
            .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"])
            .arg("-I")
            .arg(dir)
            .arg(&file);
        let shown = format!("{cmd:?}");
        match cmd.output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => failures.push(format!(
                "{shown} failed:\n{}\n--- probe.c ---\n{probe}",
                stderr(&o)
            )),
            Err(e) => failures.push(format!("cannot run `{compiler}`: {e}")),
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    failures
}

/// File-scope part of the tern probe: under C++, redeclaring a function with C
/// linkage conflicts unless the header wraps its declarations in `extern "C"`.
const TERN_PROBE_TOP: &str = "#ifdef __cplusplus\n\
     extern \"C\" const char *tern_version(void);\n\
     #endif\n";

/// Function-body part of the tern probe: a code constant, a struct size and the
/// address of the main entry point.
const TERN_PROBE_BODY: &str = "    tern_code ok = TERN_CODE_OK;\n\
     \x20   size_t callbacks_size = sizeof(tern_callbacks);\n\
     \x20   void (*send)(void) = (void (*)(void))&tern_session_send;\n\
     \x20   (void)ok;\n\
     \x20   (void)callbacks_size;\n\
     \x20   (void)send;\n";

#[test]
fn header_compiles_as_c11_and_cpp17_included_twice() {
    let functions = header_functions(&read(&header_path()));
    let failures = compile_header(
        "tern",
        &manifest_dir().join("include"),
        "tern.h",
        &functions,
        TERN_PROBE_TOP,
        TERN_PROBE_BODY,
    );
    assert!(
        failures.is_empty(),
        "include/tern.h does not compile cleanly:\n{}",
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------
// 4. The header is fresh (and, on request, committed).
// ---------------------------------------------------------------------------------

fn git(repo: &Path, args: &[&str]) -> Result<Output, String> {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .map_err(|e| format!("cannot run git: {e}"))
}

/// `Ok` when `file` (relative to `repo`) is tracked and equal to its version in HEAD.
fn committed_unchanged(repo: &Path, file: &str) -> Result<(), String> {
    let inside = git(repo, &["rev-parse", "--is-inside-work-tree"])?;
    if !inside.status.success() || stdout(&inside).trim() != "true" {
        return Err(format!(
            "{} is not a git work tree: {}",
            repo.display(),
            stderr(&inside).trim()
        ));
    }
    let tracked = git(repo, &["ls-files", "--error-unmatch", "--", file])?;
    if !tracked.status.success() {
        return Err(format!("{file} must be committed (git does not track it)"));
    }
    let head = git(repo, &["rev-parse", "--verify", "--quiet", "HEAD"])?;
    if !head.status.success() {
        return Err(format!(
            "{file} must be committed (the repository has no commit)"
        ));
    }
    let diff = git(
        repo,
        &["diff", "--no-ext-diff", "--exit-code", "HEAD", "--", file],
    )?;
    match diff.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(format!(
            "{file} differs from the committed version (build.rs regenerates it from \
             src/ffi on every build): commit it.\n{}",
            stdout(&diff)
        )),
        _ => Err(format!("git diff HEAD -- {file} failed: {}", stderr(&diff))),
    }
}

#[test]
fn header_is_fresh() {
    let declared = header_functions(&read(&header_path()));
    let report = boundary_report();
    let exported: BTreeSet<String> = report.exports.iter().cloned().collect();
    assert!(!exported.is_empty(), "no exported functions found in src");
    if let Err(e) = same_names(
        "the functions exported in src (`no_mangle`)",
        &exported,
        "the functions declared in include/tern.h",
        &declared,
    ) {
        panic!("include/tern.h is stale: {e}");
    }
    if std::env::var("TERN_CHECK_HEADER_COMMITTED").as_deref() == Ok("1") {
        if let Err(e) = committed_unchanged(manifest_dir(), "include/tern.h") {
            panic!("TERN_CHECK_HEADER_COMMITTED=1: {e}");
        }
    }
}

/// Every name the header defines at file scope carries the project's prefix, so it
/// cannot collide with a program's own macros (cbindgen turns any `pub const` into a
/// bare `#define`: a `CLOSING` once broke a C program defining its own).
#[test]
fn header_names_are_prefixed() {
    let header = read(&header_path());
    let bad: Vec<&str> = header
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("#define "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| !name.starts_with("TERN_"))
        .collect();
    assert!(
        bad.is_empty(),
        "include/tern.h defines unprefixed macros: {bad:?}"
    );
}

// ---------------------------------------------------------------------------------
// 5. The dependency tree and the panic strategy.
// ---------------------------------------------------------------------------------

/// Where a package stands in the library's normal and build dependency tree.
#[derive(Debug, PartialEq)]
enum InTree {
    /// Not in the lock file, or only behind dev (or other excluded) edges.
    Absent,
    /// In the tree; carries cargo's output.
    Present(String),
    /// cargo failed for another reason; carries its output.
    Unknown(String),
}

fn classify_tree(success: bool, out: &str, err: &str) -> InTree {
    if success {
        if out.trim().is_empty() {
            InTree::Absent
        } else {
            InTree::Present(out.to_owned())
        }
    } else if err.contains("did not match any packages") {
        InTree::Absent
    } else if err.contains("is ambiguous") {
        // More than one version of it is in the lock file.
        InTree::Present(err.to_owned())
    } else {
        InTree::Unknown(err.to_owned())
    }
}

/// `cargo tree -i <package> --edges normal,build --target all`: online first, then
/// `--offline` if that failed for another reason than "no such package".
fn cargo_tree_inverted(package: &str) -> InTree {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let run = |offline: bool| {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(manifest_dir()).args([
            "tree",
            "--invert",
            package,
            "--edges",
            "normal,build",
            "--target",
            "all",
        ]);
        if offline {
            cmd.arg("--offline");
        }
        let o = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cargo:?}: {e}"));
        classify_tree(o.status.success(), &stdout(&o), &stderr(&o))
    };
    match run(false) {
        InTree::Unknown(_) => run(true),
        known => known,
    }
}

fn package_absent(package: &str) -> Result<(), String> {
    match cargo_tree_inverted(package) {
        InTree::Absent => Ok(()),
        InTree::Present(tree) => Err(format!(
            "`{package}` is in the dependency tree (normal or build edges):\n{tree}"
        )),
        InTree::Unknown(err) => Err(format!("cargo tree -i {package} failed:\n{err}")),
    }
}

fn package_present(package: &str) -> Result<(), String> {
    match cargo_tree_inverted(package) {
        InTree::Present(_) => Ok(()),
        InTree::Absent => Err(format!(
            "`{package}` is not in the dependency tree (normal or build edges)"
        )),
        InTree::Unknown(err) => Err(format!("cargo tree -i {package} failed:\n{err}")),
    }
}

/// `line` without a TOML `#` comment (a `#` inside a string is kept).
fn strip_toml_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return &line[..i],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

/// Every setting in a Cargo manifest (or config) that asks for `panic = "abort"`,
/// as `[section] line N: text`. Also catches inline tables, dotted keys and
/// `-C panic=abort` in rustflags.
fn panic_abort_settings(toml: &str) -> Vec<String> {
    let mut section = String::new();
    let mut found = Vec::new();
    for (n, raw) in toml.lines().enumerate() {
        let line = strip_toml_comment(raw).trim();
        if line.starts_with('[') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .split('.')
                .map(|p| p.trim().trim_matches('"'))
                .collect::<Vec<_>>()
                .join(".");
            continue;
        }
        let squeezed: String = line
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
            .collect();
        if squeezed.contains("panic=abort") {
            found.push(format!("[{section}] line {}: `{}`", n + 1, raw.trim()));
        }
    }
    found
}

#[test]
fn no_aws_lc_and_panic_unwind() {
    let mut problems = Vec::new();
    for package in ["aws-lc-rs", "aws-lc-sys"] {
        if let Err(e) = package_absent(package) {
            problems.push(format!("{e} (tern uses rustls with ring only)"));
        }
    }
    if let Err(e) = package_present("ring") {
        problems.push(format!("{e} (rustls should use ring)"));
    }
    // WebSockets are frames only: tern's own connector and TLS, no second stack.
    for package in ["native-tls", "openssl-sys", "webpki-roots"] {
        if let Err(e) = package_absent(package) {
            problems.push(format!(
                "{e} (tokio-tungstenite must stay without its TLS features)"
            ));
        }
    }
    if let Err(e) = package_present("tokio-tungstenite") {
        problems.push(format!("{e} (the WebSocket client's frames)"));
    }
    let manifest = read(&manifest_dir().join("Cargo.toml"));
    for setting in panic_abort_settings(&manifest) {
        let place = if setting.starts_with("[profile.release]") {
            "the release profile"
        } else {
            "Cargo.toml"
        };
        problems.push(format!(
            "{place} sets panic = \"abort\" ({setting}): the panic boundary needs \
             unwinding, or a panic aborts the host program"
        ));
    }
    for config in [".cargo/config.toml", ".cargo/config"] {
        let path = manifest_dir().join(config);
        if path.is_file() {
            for setting in panic_abort_settings(&read(&path)) {
                problems.push(format!(
                    "{config} asks for panic = abort ({setting}): the panic boundary needs \
                     unwinding"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):{}",
        problems.len(),
        bullets(&problems)
    );
}

// ---------------------------------------------------------------------------------
// The checkers fail on bad input.
// ---------------------------------------------------------------------------------

fn lint(src: &str, in_ffi: bool) -> BoundaryReport {
    let mut report = BoundaryReport::default();
    check_boundary("snippet.rs", src, in_ffi, &mut report);
    report
}

const GOOD_DOCS: &str = "/// Does a thing.\n\
    ///\n\
    /// Ownership: nothing.\n\
    /// Thread safety: any thread.\n\
    /// Errors: none.\n\
    /// Since: 0.1\n";

#[test]
fn boundary_lint_accepts_well_formed_exports() {
    let src = format!(
        "{GOOD_DOCS}#[no_mangle]\n\
         pub unsafe extern \"C\" fn tern_a(p: *const u8, cb: Option<unsafe extern \"C\" fn(*mut u8)>) -> tern_code {{\n\
             ffi_boundary! {{ let x = 1; x }}\n\
         }}\n\
         struct tern_h;\n\
         impl tern_h {{\n\
         /// Summary.\n\
         ///\n\
         /// Ownership: borrows.\n\
         /// Callbacks: once.\n\
         /// Errors: none.\n\
         /// Since: 0.1\n\
         #[unsafe(no_mangle)]\n\
         pub extern \"C\" fn tern_b() -> *mut tern_h {{ crate::ffi::boundary::ffi_boundary!(std::ptr::null_mut()) }}\n\
         }}\n\
         fn helper(x: &u8, b: Box<u8>) -> &u8 {{ x }}\n"
    );
    let report = lint(&src, true);
    assert!(report.offenders.is_empty(), "{:#?}", report.offenders);
    assert_eq!(report.exports, ["tern_a", "tern_b"]);
    assert_eq!(report.ffi_exports, 2);
}

#[test]
fn boundary_lint_reports_every_broken_rule() {
    let src = format!(
        "#[no_mangle]\n\
         pub extern \"C\" fn tern_undocumented() {{ ffi_boundary! {{}} }}\n\
         {GOOD_DOCS}#[no_mangle]\n\
         pub extern \"C\" fn wrong_prefix() {{ ffi_boundary! {{}} }}\n\
         {GOOD_DOCS}#[no_mangle]\n\
         pub fn tern_rust_abi() {{ ffi_boundary! {{}} }}\n\
         {GOOD_DOCS}#[no_mangle]\n\
         pub extern \"C-unwind\" fn tern_unwind_abi() {{ ffi_boundary! {{}} }}\n\
         /// Summary.\n\
         /// Since: 0.1\n\
         /// Ownership: x.\n\
         #[no_mangle]\n\
         pub extern \"C\" fn tern_bad_docs() {{ ffi_boundary! {{}} }}\n\
         /// Since: 0.1\n\
         /// Ownership: x. Thread safety: any. Errors: none.\n\
         #[no_mangle]\n\
         pub extern \"C\" fn tern_no_summary() {{ ffi_boundary! {{}} }}\n\
         {GOOD_DOCS}#[no_mangle]\n\
         pub extern \"C\" fn tern_no_boundary() -> u32 {{ let x = 1; x }}\n\
         {GOOD_DOCS}#[no_mangle]\n\
         pub extern \"C\" fn tern_after_boundary() {{ ffi_boundary! {{}}; other(); }}\n\
         {GOOD_DOCS}#[no_mangle]\n\
         pub extern \"C\" fn tern_empty() {{}}\n\
         {GOOD_DOCS}#[no_mangle]\n\
         pub extern \"C\" fn tern_types(r: &u8, b: Box<u8>, f: extern \"C\" fn(), o: Option<&mut u8>, g: Option<fn()>) -> &'static u8 {{ ffi_boundary! {{}} }}\n\
         struct tern_h;\n\
         impl tern_h {{\n\
         {GOOD_DOCS}#[unsafe(no_mangle)]\n\
         pub extern \"C\" fn tern_in_impl(&self) -> Box<u8> {{ ffi_boundary! {{}} }}\n\
         }}\n\
         {GOOD_DOCS}#[export_name = \"tern_renamed\"]\n\
         pub extern \"C\" fn renamed() {{ ffi_boundary! {{}} }}\n\
         macro_rules! make_export {{ ($n:ident) => {{ #[no_mangle] pub extern \"C\" fn $n() {{}} }} }}\n\
         other_macro! {{ #[unsafe(no_mangle)] pub extern \"C\" fn tern_hidden() {{}} }}\n"
    );
    let report = lint(&src, true);
    let all = report.offenders.join("\n");
    let expect = [
        ("tern_undocumented", "has no `///` docs"),
        ("wrong_prefix", "does not start with `tern_`"),
        ("tern_rust_abi", "is not `extern \"C\"`"),
        ("tern_unwind_abi", "`extern \"C-unwind\"`"),
        (
            "tern_bad_docs",
            "lack a line starting with `Thread safety:` or `Callbacks:`",
        ),
        ("tern_bad_docs", "lack a line starting with `Errors:`"),
        ("tern_bad_docs", "out of order"),
        ("tern_no_summary", "instead of a one-line summary"),
        ("tern_no_summary", "lack a line starting with `Errors:`"),
        ("tern_no_boundary", "starts with a `let` statement"),
        ("tern_after_boundary", "body has 2 statements"),
        ("tern_empty", "body is empty"),
        ("tern_types", "parameter `r` is a reference"),
        ("tern_types", "parameter `b` is a `Box<..>`"),
        ("tern_types", "parameter `f` is a bare `fn` pointer"),
        ("tern_types", "parameter `o` contains a reference"),
        (
            "tern_types",
            "parameter `g` contains a fn pointer that is not `extern \"C\"`",
        ),
        ("tern_types", "return type is a reference"),
        ("tern_in_impl", "takes `self`"),
        ("tern_in_impl", "return type is a `Box<..>`"),
        ("renamed", "export_name"),
        ("macro_rules! make_export", "cbindgen cannot see"),
        ("other_macro!", "cbindgen cannot see"),
    ];
    let mut missing = Vec::new();
    for (item, problem) in expect {
        if !report
            .offenders
            .iter()
            .any(|o| o.contains(&format!("`{item}`")) && o.contains(problem))
        {
            missing.push(format!("{item}: {problem}"));
        }
    }
    assert!(
        missing.is_empty(),
        "not reported:{}\nreported:\n{all}",
        bullets(&missing)
    );
    assert!(
        !all.contains("`tern_types`: parameter `g` is a bare"),
        "Option<fn> is not a bare fn pointer:\n{all}"
    );
    assert!(report
        .offenders
        .iter()
        .all(|o| o.starts_with("snippet.rs: ")));

    let outside = lint(
        &format!(
            "{GOOD_DOCS}#[no_mangle]\npub extern \"C\" fn tern_x() {{ ffi_boundary! {{}} }}\n"
        ),
        false,
    );
    assert_eq!(outside.ffi_exports, 0);
    assert!(
        outside.offenders.len() == 1 && outside.offenders[0].contains("outside src/ffi"),
        "{:?}",
        outside.offenders
    );

    let broken = lint("fn (", true);
    assert!(
        broken.offenders[0].contains("does not parse"),
        "{:?}",
        broken.offenders
    );
}

#[test]
fn header_scanner_skips_comments_and_literals() {
    let header = "/* tern_in_block(x) */\n\
        // tern_in_line(x)\n\
        /**\n * Frees it. `tern_doc_ref(NULL)` does nothing.\n */\n\
        #define TERN_S \"tern_in_string(\"\n\
        tern_code tern_one(const tern_x *x);\n\
        const char *tern_two(void);\n\
        void (*cb)(void *tern_not_a_call);\n\
        uint64_t tern_three (int);\n\
        int x = sizeof(tern_callbacks);\n";
    let got: Vec<String> = header_functions(header).into_iter().collect();
    assert_eq!(got, ["tern_one", "tern_two"]);
}

#[test]
fn nm_scanner_keeps_only_global_text_symbols() {
    let nm = "                 w __cxa_finalize@GLIBC_2.2.5\n\
        0000000000012340 T tern_a\n\
        0000000000012350 T tern_b@@TERN_0.1\n\
        0000000000012360 t local_fn\n\
        0000000000012370 D tern_data\n\
        0000000000012380 B tern_bss\n\
        0000000000012390 T rust_eh_personality\n";
    let got: Vec<String> = nm_text_symbols(nm).into_iter().collect();
    assert_eq!(got, ["rust_eh_personality", "tern_a", "tern_b"]);
}

#[test]
fn name_sets_report_both_differences() {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert!(same_names("L", &set(&["a", "b"]), "R", &set(&["b", "a"])).is_ok());
    let e = same_names("L", &set(&["a", "b", "c"]), "R", &set(&["b", "d"])).unwrap_err();
    assert!(
        e.contains("2 only in L:\n  - a\n  - c") && e.contains("1 only in R:\n  - d"),
        "{e}"
    );
}

#[test]
fn header_compile_check_rejects_broken_headers() {
    let dir =
        std::env::temp_dir().join(format!("tern-static-checks-{}-headers", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let fns: BTreeSet<String> = ["tern_version".to_owned()].into();
    // No include guard: the second inclusion redefines the struct.
    std::fs::write(
        dir.join("unguarded.h"),
        "const char *tern_version(void);\nstruct tern_s { int x; };\n",
    )
    .unwrap();
    // Guarded but without `extern "C"`: fine in C, wrong linkage in C++.
    std::fs::write(
        dir.join("no_extern_c.h"),
        "#ifndef NO_EXTERN_C_H\n#define NO_EXTERN_C_H\nconst char *tern_version(void);\n#endif\n",
    )
    .unwrap();
    // Guarded and wrapped: compiles as both.
    std::fs::write(
        dir.join("fine.h"),
        "#ifndef FINE_H\n#define FINE_H\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\
         const char *tern_version(void);\n\
         #ifdef __cplusplus\n}\n#endif\n#endif\n",
    )
    .unwrap();
    let unguarded = compile_header("unguarded", &dir, "unguarded.h", &fns, "", "");
    let no_extern_c = compile_header(
        "no-extern-c",
        &dir,
        "no_extern_c.h",
        &fns,
        TERN_PROBE_TOP,
        "",
    );
    let fine = compile_header("fine", &dir, "fine.h", &fns, TERN_PROBE_TOP, "");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        unguarded.len(),
        2,
        "both C and C++ must fail: {unguarded:#?}"
    );
    assert!(unguarded[0].contains("redefinition"), "{}", unguarded[0]);
    assert_eq!(no_extern_c.len(), 1, "only C++ must fail: {no_extern_c:#?}");
    assert!(no_extern_c[0].contains("c++"), "{}", no_extern_c[0]);
    assert!(fine.is_empty(), "{fine:#?}");
}

#[test]
fn header_commit_check_reports_untracked_and_modified_files() {
    let repo = std::env::temp_dir().join(format!("tern-static-checks-{}-git", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(&repo).expect("temp dir");
    let run = |args: &[&str]| {
        let o = git(&repo, args).unwrap();
        assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    };
    let not_a_repo = committed_unchanged(&repo, "h.h");
    run(&["init", "-q"]);
    std::fs::write(repo.join("h.h"), "one\n").unwrap();
    let untracked = committed_unchanged(&repo, "h.h");
    run(&["add", "h.h"]);
    let no_commit = committed_unchanged(&repo, "h.h");
    run(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.invalid",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "-q",
        "-m",
        "h",
    ]);
    let clean = committed_unchanged(&repo, "h.h");
    std::fs::write(repo.join("h.h"), "two\n").unwrap();
    let modified = committed_unchanged(&repo, "h.h");
    run(&["add", "h.h"]);
    let staged = committed_unchanged(&repo, "h.h");
    let _ = std::fs::remove_dir_all(&repo);

    assert!(
        not_a_repo
            .as_ref()
            .is_err_and(|e| e.contains("not a git work tree")),
        "{not_a_repo:?}"
    );
    assert!(
        untracked
            .as_ref()
            .is_err_and(|e| e.contains("h.h must be committed")),
        "{untracked:?}"
    );
    assert!(
        no_commit
            .as_ref()
            .is_err_and(|e| e.contains("h.h must be committed")),
        "{no_commit:?}"
    );
    assert_eq!(clean, Ok(()));
    assert!(
        modified
            .as_ref()
            .is_err_and(|e| e.contains("differs") && e.contains("-one") && e.contains("+two")),
        "{modified:?}"
    );
    assert!(
        staged.as_ref().is_err_and(|e| e.contains("differs")),
        "staged is not committed: {staged:?}"
    );
}

#[test]
fn dependency_checks_report_what_they_find() {
    assert_eq!(
        classify_tree(
            false,
            "",
            "error: package ID specification `aws-lc-rs` did not match any packages"
        ),
        InTree::Absent
    );
    assert_eq!(
        classify_tree(true, "", "warning: nothing to print."),
        InTree::Absent
    );
    assert_eq!(
        classify_tree(true, "aws-lc-rs v1.0.0\n└── rustls\n", ""),
        InTree::Present("aws-lc-rs v1.0.0\n└── rustls\n".into())
    );
    assert!(matches!(
        classify_tree(false, "", "error: specification `x` is ambiguous"),
        InTree::Present(_)
    ));
    assert!(matches!(
        classify_tree(false, "", "error: failed to download"),
        InTree::Unknown(_)
    ));
    // Against the real tree: ring is there and aws-lc-rs is not, so the opposite
    // claims fail.
    let e = package_absent("ring").unwrap_err();
    assert!(
        e.contains("`ring` is in the dependency tree") && e.contains("rustls"),
        "{e}"
    );
    let e = package_present("aws-lc-rs").unwrap_err();
    assert!(
        e.contains("`aws-lc-rs` is not in the dependency tree"),
        "{e}"
    );
}

#[test]
fn panic_abort_is_found_anywhere_in_a_manifest() {
    let manifest = "[package]\n\
        name = \"x\" # panic = \"abort\" in a comment is fine\n\
        description = \"a # in a string\"\n\
        [profile.release]\n\
        debug = 1\n\
        panic   =   'abort'\n\
        [profile.dev]\n\
        panic = \"unwind\"\n\
        [profile]\n\
        bench.panic = \"abort\"\n\
        [profile.\"custom\"]\n\
        inherits = \"release\"\n\
        [profile.x]\n\
        package.foo = { panic = \"abort\" }\n\
        [build]\n\
        rustflags = [\"-C\", \"panic=abort\"]\n";
    let found = panic_abort_settings(manifest);
    assert_eq!(
        found,
        [
            "[profile.release] line 6: `panic   =   'abort'`",
            "[profile] line 10: `bench.panic = \"abort\"`",
            "[profile.x] line 14: `package.foo = { panic = \"abort\" }`",
            "[build] line 16: `rustflags = [\"-C\", \"panic=abort\"]`",
        ]
    );
    assert!(panic_abort_settings("[profile.release]\npanic = \"unwind\"\n").is_empty());
}
