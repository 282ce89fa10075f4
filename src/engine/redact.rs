//! Redaction of secrets in every text tern produces (URL userinfo, credentials headers).

use url::Url;

/// The URL with its password (and user name) replaced, for messages and the effective URL.
pub fn url(u: &Url) -> String {
    if u.username().is_empty() && u.password().is_none() {
        return u.as_str().to_owned();
    }
    let mut c = u.clone();
    let _ = c.set_username("");
    let _ = c.set_password(None);
    let s = c.as_str().to_owned();
    // Show that credentials were present without showing them.
    match s.find("://") {
        Some(i) => format!("{}://***@{}", &s[..i], &s[i + 3..]),
        None => s,
    }
}

/// Redacts a URL given as text, even one that does not parse.
pub fn url_str(s: &str) -> String {
    if let Ok(u) = Url::parse(s) {
        return url(&u);
    }
    // Best effort: drop anything between "://" and the last '@' before the path.
    if let Some(i) = s.find("://") {
        let rest = &s[i + 3..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            return format!("{}://***@{}", &s[..i], &rest[at + 1..]);
        }
    }
    s.to_owned()
}

/// Whether a header's value must never appear in text.
pub fn is_secret_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization")
        || name.eq_ignore_ascii_case("cookie")
        || name.eq_ignore_ascii_case("set-cookie")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_credentials() {
        let u = Url::parse("https://user:s3cret@example.com/a?b").unwrap();
        let r = url(&u);
        assert!(!r.contains("s3cret") && !r.contains("user"), "{r}");
        assert_eq!(r, "https://***@example.com/a?b");
        assert_eq!(url_str("http://u:p@x y/"), "http://***@x y/");
        assert_eq!(url_str("http://host/path@x"), "http://host/path@x");
    }
}
