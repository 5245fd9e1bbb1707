//! The server-rendered HTML of the sign-in pages. Every value from a request or the database
//! goes through [`escape`].

use axum::response::Html;

/// Escapes text for HTML element content and double-quoted attribute values; the email
/// templates use the same function.
pub use medgate_service::email::templates::escape_html as escape;

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f6f8;margin:0}\
main{max-width:380px;margin:10vh auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .3rem}\
input[type=email],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}\
button{margin-top:1rem;width:100%;padding:.6rem;border:0;border-radius:4px;background:#1c5fd1;color:#fff;font-size:1rem;cursor:pointer}\
.error{color:#b00020;margin:.5rem 0}.choice{margin-top:.5rem;background:#eef2f8;color:#123;text-align:left}";

/// Wraps page content in the shared layout. `body` must already be escaped HTML.
pub fn layout(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        title = escape(title),
    ))
}

pub fn error_page(title: &str, message: &str) -> Html<String> {
    layout(
        title,
        &format!(
            "<h1>{}</h1><p class=\"error\">{}</p>",
            escape(title),
            escape(message)
        ),
    )
}

/// A hidden form field.
pub fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn error_page_escapes_message() {
        let Html(html) = error_page("Oops", "<script>alert(1)</script>");
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;"));
    }
}
