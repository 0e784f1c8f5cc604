//! The admin UI's static files (npm `@socket.io/admin-ui`, `ui/dist`, and its icon font from
//! `@mdi/font` under `mdi/`), embedded at build time by
//! `build.rs` like the client bundle and served at `/admin/` when `--admin-ui` is on, so an
//! operator opens the UI from the node itself and nothing is fetched from the network. The page
//! then connects back to the node's admin namespace (`super`). Empty when npm was unavailable at
//! build time (the build then warns).

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, LOCATION};
use http::{HeaderValue, Response, StatusCode};

use crate::body::Body;

include!(concat!(env!("OUT_DIR"), "/admin_ui.rs"));

/// The HTTP path the UI is served under.
pub const PATH: &str = "/admin/";

/// The version of the embedded `@socket.io/admin-ui` (empty when none is embedded).
pub fn version() -> &'static str {
    VERSION
}

/// The bytes and content type of the embedded file `name` (a path in `ui/dist`, e.g.
/// `js/app.0d7d7845.js`), if any.
pub fn file(name: &str) -> Option<(&'static [u8], &'static str)> {
    let (_, bytes) = FILES.iter().find(|(file, _)| *file == name)?;
    let content_type = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "application/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    };
    Some((bytes, content_type))
}

/// The answer to `GET path` when `path` is the UI's: `/admin` is redirected to `/admin/` (the
/// page loads its files relative to it), `/admin/` is the page, `/admin/<file>` a file, a 304
/// when `if_none_match` matches; `None` for any other path or an unknown file.
pub fn response(path: &str, if_none_match: Option<&HeaderValue>) -> Option<Response<Body>> {
    if path == PATH.trim_end_matches('/') {
        let redirect = Response::builder()
            .status(StatusCode::PERMANENT_REDIRECT)
            .header(LOCATION, PATH)
            .body(Body::new(Bytes::new()));
        return redirect.ok();
    }
    let name = path.strip_prefix(PATH)?;
    let name = if name.is_empty() { "index.html" } else { name };
    let (bytes, content_type) = file(name)?;
    let etag = format!("\"admin-ui-{VERSION}\"");
    let builder = Response::builder()
        .header(CACHE_CONTROL, "public, max-age=0")
        .header(ETAG, etag.as_str())
        // An admin page: never inside another site's frame, never sniffed as another type.
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff");
    let matches = if_none_match.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
    });
    let response = if matches {
        builder.status(StatusCode::NOT_MODIFIED).body(Body::new(Bytes::new()))
    } else {
        builder
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, content_type)
            .body(Body::new(Bytes::from_static(bytes)))
    };
    response.ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_embedded_without_network_links() {
        assert!(version().starts_with("0."), "{}", version());
        let (page, content_type) = file("index.html").unwrap();
        assert_eq!(content_type, "text/html; charset=utf-8");
        let page = std::str::from_utf8(page).unwrap();
        assert!(page.contains("<div id=\"app\">"), "{page}");
        assert!(!page.contains("https://"), "the page still loads from the network: {page}");
        for script in page.split("src=\"").skip(1) {
            let name = &script[..script.find('"').unwrap()];
            assert!(file(name).is_some(), "{name} is not embedded");
        }
        assert!(FILES.iter().all(|(name, _)| !name.ends_with(".map")));
        // The icon font, from the page's own stylesheet link.
        assert!(page.contains("href=\"mdi/css/materialdesignicons.min.css\""), "{page}");
        let css = std::str::from_utf8(file("mdi/css/materialdesignicons.min.css").unwrap().0).unwrap();
        assert!(css.contains("../fonts/materialdesignicons-webfont.woff2"));
        assert_eq!(file("mdi/fonts/materialdesignicons-webfont.woff2").unwrap().1, "font/woff2");
    }

    #[test]
    fn routes() {
        assert_eq!(response("/admin", None).unwrap().status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(response("/admin/", None).unwrap().status(), StatusCode::OK);
        assert!(response("/admin/nope.js", None).is_none());
        assert!(response("/administrator", None).is_none());
        assert!(response("/", None).is_none());
        let ok = response("/admin/favicon.png", None).unwrap();
        assert_eq!(ok.headers()[CONTENT_TYPE], "image/png");
        let etag = ok.headers()[ETAG].clone();
        assert_eq!(response("/admin/favicon.png", Some(&etag)).unwrap().status(), StatusCode::NOT_MODIFIED);
    }
}
