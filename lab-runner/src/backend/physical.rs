//! Physical boards.

/// Splits `http://host:port[/path]` into host, port and path. Only plain HTTP is spoken.
pub fn parse_http_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 80),
    };
    if host.is_empty() || host.contains(['@', ' ']) {
        return None;
    }
    Some((host.to_owned(), port, path))
}
