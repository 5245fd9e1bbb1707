//! The built-in messages and their per-project overrides.
//!
//! A message has a subject, a plain-text body and an HTML body, each a template with named
//! variables written `{{name}}`: `name` (the recipient's name), `projectName`, `link`,
//! `code`, `email` and `appName`, the product name. A variable the request does not carry
//! renders as nothing. Values are inserted once and never read as templates themselves; in
//! the HTML body they are escaped, and in the subject line breaks become spaces.
//!
//! A project overrides any part through `Project.setting` entries (settings, not secrets,
//! because templates are not confidential and project admins edit settings), named
//! `email<Kind><Part>` with `valueString`: for example `emailInviteSubject`,
//! `emailPasswordResetText` or `emailMfaCodeHtml`. When a project overrides the text but not
//! the HTML, the HTML body is the overridden text, escaped, so both parts carry the same words. The
//! setting `brandName`, or else `appName`, replaces the product name, as in Medplum.

use std::collections::BTreeMap;

use medgate_fhir::resources::Project;
use serde_json::Value;

use super::EmailKind;

/// A message ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The parts of one kind of message a project replaces; `None` keeps the built-in part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateOverrides {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

struct Builtin {
    subject: &'static str,
    text: &'static str,
    html: &'static str,
}

/// Returns the name of a kind as it appears in setting names (`email<Name>Subject`).
pub fn setting_name(kind: EmailKind) -> &'static str {
    match kind {
        EmailKind::Invite => "Invite",
        EmailKind::Welcome => "Welcome",
        EmailKind::PasswordReset => "PasswordReset",
        EmailKind::VerifyEmail => "VerifyEmail",
        EmailKind::MfaCode => "MfaCode",
        EmailKind::MfaReset => "MfaReset",
    }
}

// The subjects and wording follow Medplum's built-in messages ("Welcome to Medplum",
// "Medplum: Welcome to <project>", "Medplum Password Reset", "Your Medplum verification
// code"), with the product name as a variable.
fn builtin(kind: EmailKind) -> Builtin {
    match kind {
        EmailKind::Invite => Builtin {
            subject: "Welcome to {{appName}}",
            text: "Welcome to {{appName}}!\n\n\
                   You were invited to {{projectName}}.\n\n\
                   Please click on the following link to create your account:\n\n\
                   {{link}}\n\n\
                   Thank you,\n{{appName}}\n",
            html: "<p>Welcome to {{appName}}!</p>\n\
                   <p>You were invited to {{projectName}}.</p>\n\
                   <p>Please click on the following link to create your account:</p>\n\
                   <p><a href=\"{{link}}\">{{link}}</a></p>\n\
                   <p>Thank you,<br>{{appName}}</p>\n",
        },
        EmailKind::Welcome => Builtin {
            subject: "{{appName}}: Welcome to {{projectName}}",
            text: "You were invited to {{projectName}}.\n\n\
                   The next time you sign in, you will see {{projectName}} as an option.\n\n\
                   You can sign in here:\n{{link}}\n\n\
                   Thank you,\n{{appName}}\n",
            html: "<p>You were invited to {{projectName}}.</p>\n\
                   <p>The next time you sign in, you will see {{projectName}} as an option.</p>\n\
                   <p>You can sign in here:<br><a href=\"{{link}}\">{{link}}</a></p>\n\
                   <p>Thank you,<br>{{appName}}</p>\n",
        },
        EmailKind::PasswordReset => Builtin {
            subject: "{{appName}} Password Reset",
            text: "Someone requested to reset your {{appName}} password.\n\n\
                   To reset your password, please click on the following link:\n\n\
                   {{link}}\n\n\
                   If you received this in error, you can safely ignore it.\n\n\
                   Thank you,\n{{appName}}\n",
            html: "<p>Someone requested to reset your {{appName}} password.</p>\n\
                   <p>To reset your password, please click on the following link:</p>\n\
                   <p><a href=\"{{link}}\">{{link}}</a></p>\n\
                   <p>If you received this in error, you can safely ignore it.</p>\n\
                   <p>Thank you,<br>{{appName}}</p>\n",
        },
        EmailKind::VerifyEmail => Builtin {
            subject: "{{appName}} Email Verification",
            text: "Please verify your email address for {{appName}} by clicking on the \
                   following link:\n\n\
                   {{link}}\n\n\
                   If you received this in error, you can safely ignore it.\n\n\
                   Thank you,\n{{appName}}\n",
            html: "<p>Please verify your email address for {{appName}} by clicking on the \
                   following link:</p>\n\
                   <p><a href=\"{{link}}\">{{link}}</a></p>\n\
                   <p>If you received this in error, you can safely ignore it.</p>\n\
                   <p>Thank you,<br>{{appName}}</p>\n",
        },
        EmailKind::MfaCode => Builtin {
            subject: "Your {{appName}} verification code",
            text: "Your {{appName}} verification code is: {{code}}\n\n\
                   Enter it on the sign-in page. It can be used once.\n\n\
                   If you did not try to sign in, change your password.\n",
            html: "<p>Your {{appName}} verification code is: <strong>{{code}}</strong></p>\n\
                   <p>Enter it on the sign-in page. It can be used once.</p>\n\
                   <p>If you did not try to sign in, change your password.</p>\n",
        },
        EmailKind::MfaReset => Builtin {
            subject: "{{appName}}: multi-factor authentication reset",
            text: "An administrator of {{projectName}} reset the multi-factor authentication \
                   of your {{appName}} account.\n\n\
                   You will be asked to set it up again the next time you sign in. If you did \
                   not expect this, contact the administrators of {{projectName}}.\n\n\
                   Thank you,\n{{appName}}\n",
            html: "<p>An administrator of {{projectName}} reset the multi-factor \
                   authentication of your {{appName}} account.</p>\n\
                   <p>You will be asked to set it up again the next time you sign in. If you \
                   did not expect this, contact the administrators of {{projectName}}.</p>\n\
                   <p>Thank you,<br>{{appName}}</p>\n",
        },
    }
}

/// Reads a `Project.setting` entry's `valueString`.
pub fn project_setting<'a>(project: &'a Project, name: &str) -> Option<&'a str> {
    project
        .extra
        .get("setting")
        .and_then(Value::as_array)?
        .iter()
        .find(|entry| entry.get("name").and_then(Value::as_str) == Some(name))?
        .get("valueString")
        .and_then(Value::as_str)
}

/// Returns the product name a project's messages use: `brandName`, else `appName`, else `default`.
pub fn brand_name(project: Option<&Project>, default: &str) -> String {
    project
        .and_then(|project| {
            ["brandName", "appName"]
                .iter()
                .find_map(|name| project_setting(project, name))
        })
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .unwrap_or(default)
        .to_string()
}

/// Reads the overrides of one kind of message from a project's settings.
pub fn project_overrides(project: &Project, kind: EmailKind) -> TemplateOverrides {
    let part = |suffix: &str| {
        project_setting(project, &format!("email{}{suffix}", setting_name(kind)))
            .filter(|template| !template.trim().is_empty())
            .map(str::to_string)
    };
    TemplateOverrides {
        subject: part("Subject"),
        text: part("Text"),
        html: part("Html"),
    }
}

/// Renders one message. `values` are the request's variables; `app_name` fills `appName`.
pub fn render(
    kind: EmailKind,
    values: &BTreeMap<String, String>,
    app_name: &str,
    overrides: &TemplateOverrides,
) -> RenderedEmail {
    let mut values = values.clone();
    values.insert("appName".to_string(), app_name.to_string());
    let builtin = builtin(kind);

    let subject_template = overrides.subject.as_deref().unwrap_or(builtin.subject);
    let subject = substitute(subject_template, &values, str::to_string)
        .replace(['\r', '\n'], " ")
        .trim()
        .to_string();

    let text_template = overrides.text.as_deref().unwrap_or(builtin.text);
    let text = substitute(text_template, &values, str::to_string);

    let html = match (&overrides.html, &overrides.text) {
        (Some(html), _) => substitute(html, &values, escape_html),
        (None, Some(_)) => text_to_html(&text),
        (None, None) => substitute(builtin.html, &values, escape_html),
    };
    RenderedEmail {
        subject,
        text,
        html,
    }
}

/// Replaces each `{{ name }}` with `encode(value)`, in one pass over the template.
fn substitute(
    template: &str,
    values: &BTreeMap<String, String>,
    encode: impl Fn(&str) -> String,
) -> String {
    let mut output = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(length) = rest[start + 2..].find("}}") else {
            break;
        };
        output.push_str(&rest[..start]);
        let name = rest[start + 2..start + 2 + length].trim();
        if let Some(value) = values.get(name) {
            output.push_str(&encode(value));
        }
        rest = &rest[start + 2 + length + 2..];
    }
    output.push_str(rest);
    output
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Converts plain text to HTML: one `<p>` per paragraph, line breaks kept, all of it escaped.
fn text_to_html(text: &str) -> String {
    text.split("\n\n")
        .map(str::trim)
        .filter(|paragraph| !paragraph.is_empty())
        .map(|paragraph| format!("<p>{}</p>\n", escape_html(paragraph).replace('\n', "<br>")))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn project(settings: Value) -> Project {
        serde_json::from_value(json!({"resourceType": "Project", "id": "p1", "setting": settings}))
            .unwrap()
    }

    #[test]
    fn invite_builtin_has_link_and_names() {
        let rendered = render(
            EmailKind::Invite,
            &values(&[
                ("projectName", "Clinic"),
                ("link", "https://app/setpassword/1/2"),
            ]),
            "Medplum",
            &TemplateOverrides::default(),
        );
        assert_eq!(rendered.subject, "Welcome to Medplum");
        assert!(rendered.text.contains("You were invited to Clinic."));
        assert!(rendered.text.contains("https://app/setpassword/1/2"));
        assert!(
            rendered
                .html
                .contains("<a href=\"https://app/setpassword/1/2\">")
        );
    }

    #[test]
    fn html_escapes_values_but_text_does_not() {
        let rendered = render(
            EmailKind::Welcome,
            &values(&[("projectName", "<b>A & B</b>"), ("link", "x\"y")]),
            "Medplum",
            &TemplateOverrides::default(),
        );
        assert!(rendered.html.contains("&lt;b&gt;A &amp; B&lt;/b&gt;"));
        assert!(!rendered.html.contains("<b>A"));
        assert!(rendered.html.contains("href=\"x&quot;y\""));
        assert!(rendered.text.contains("<b>A & B</b>"));
    }

    #[test]
    fn values_are_not_templates() {
        let rendered = render(
            EmailKind::MfaCode,
            &values(&[("code", "{{appName}}")]),
            "Brand",
            &TemplateOverrides::default(),
        );
        assert!(rendered.text.contains("code is: {{appName}}"));
    }

    #[test]
    fn subject_cannot_break_lines() {
        let rendered = render(
            EmailKind::Welcome,
            &values(&[("projectName", "A\r\nBcc: x@example.com")]),
            "Medplum",
            &TemplateOverrides::default(),
        );
        assert!(!rendered.subject.contains('\n'));
        assert!(!rendered.subject.contains('\r'));
    }

    #[test]
    fn project_overrides_and_brand() {
        let project = project(json!([
            {"name": "brandName", "valueString": "Acme Health"},
            {"name": "emailPasswordResetSubject", "valueString": "Reset for {{ name }}"},
            {"name": "emailPasswordResetText", "valueString": "Hi {{name}},\nopen {{link}}\n\n{{unknown}}bye"},
        ]));
        let overrides = project_overrides(&project, EmailKind::PasswordReset);
        let brand = brand_name(Some(&project), "Medplum");
        assert_eq!(brand, "Acme Health");
        let rendered = render(
            EmailKind::PasswordReset,
            &values(&[("name", "Ann <Lee>"), ("link", "https://x/?a=1&b=2")]),
            &brand,
            &overrides,
        );
        assert_eq!(rendered.subject, "Reset for Ann <Lee>");
        assert_eq!(
            rendered.text,
            "Hi Ann <Lee>,\nopen https://x/?a=1&b=2\n\nbye"
        );
        assert_eq!(
            rendered.html,
            "<p>Hi Ann &lt;Lee&gt;,<br>open https://x/?a=1&amp;b=2</p>\n<p>bye</p>\n"
        );
        assert_eq!(
            project_overrides(&project, EmailKind::Invite),
            TemplateOverrides::default()
        );
    }

    #[test]
    fn app_name_is_the_fallback_brand() {
        let project = project(json!([{"name": "appName", "valueString": "Portal"}]));
        assert_eq!(brand_name(Some(&project), "Medplum"), "Portal");
        assert_eq!(brand_name(None, "Medplum"), "Medplum");
        let rendered = render(
            EmailKind::MfaCode,
            &values(&[("code", "123456")]),
            "Portal",
            &TemplateOverrides::default(),
        );
        assert_eq!(rendered.subject, "Your Portal verification code");
    }

    #[test]
    fn unterminated_placeholder_is_kept() {
        let rendered = substitute("a {{name", &values(&[("name", "x")]), str::to_string);
        assert_eq!(rendered, "a {{name");
    }
}
