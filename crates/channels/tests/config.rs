//! Configuration: env and file sources, validation, status without secrets, and the
//! adapter set built from it.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::SystemTime;

use http::{HeaderMap, StatusCode};
use ironclaw_channels::config::{Availability, ConfigError};
use ironclaw_channels::{Channels, ChannelsConfig, OutboundMessage};

const WEBHOOK_SECRET: &str = "whsec-SECRET-0123456789abcdef";
const SLACK_SIGNING: &str = "slack-SIGNING-secret-0123456789";
const SLACK_TOKEN: &str = "xoxb-SLACK-TOKEN-0123456789";
const TG_TOKEN: &str = "4242:TGTOKENsecret_0123456789";
const TG_SECRET: &str = "tg-WEBHOOK-secret_0123456789";

fn all_env() -> Vec<(String, String)> {
    [
        ("IRONCLAW_WEBHOOK_CI_SECRET", WEBHOOK_SECRET),
        (
            "IRONCLAW_WEBHOOK_CI_URL",
            "https://hooks.example.org/ironclaw",
        ),
        ("IRONCLAW_WEBHOOK_ALERTS_IN_SECRET", WEBHOOK_SECRET),
        ("SLACK_SIGNING_SECRET", SLACK_SIGNING),
        ("SLACK_BOT_TOKEN", SLACK_TOKEN),
        ("SLACK_BOT_USER_ID", "U0BOT"),
        ("TELEGRAM_BOT_TOKEN", TG_TOKEN),
        ("TELEGRAM_WEBHOOK_SECRET", TG_SECRET),
        ("TELEGRAM_BOT_USERNAME", "@ironclaw_bot"),
        ("PATH", "/usr/bin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn assert_no_secrets(text: &str) {
    for s in [
        WEBHOOK_SECRET,
        SLACK_SIGNING,
        SLACK_TOKEN,
        TG_TOKEN,
        TG_SECRET,
        "TGTOKENsecret",
    ] {
        assert!(!text.contains(s), "secret {s:?} leaked into: {text}");
    }
}

#[test]
fn env_turns_adapters_on_and_status_never_shows_secrets() {
    let cfg = ChannelsConfig::from_env_vars(all_env()).unwrap();
    assert_eq!(cfg.webhooks.len(), 2);
    assert!(cfg.webhooks.contains_key("alerts_in"));
    let status = cfg.status();
    let lines: Vec<String> = status.iter().map(ToString::to_string).collect();
    let text = lines.join("\n");
    assert_no_secrets(&text);
    assert_no_secrets(&format!("{cfg:?}"));
    assert!(
        lines.contains(&"webhook/ci: inbound on; outbound on".to_owned()),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("webhook/alerts_in: inbound on; outbound off (no url")),
        "{text}"
    );
    assert!(
        lines.contains(&"slack: inbound on; outbound on".to_owned()),
        "{text}"
    );
    assert!(
        lines.contains(&"telegram: inbound on; outbound on".to_owned()),
        "{text}"
    );
    assert!(
        lines.contains(&"web: inbound on; outbound on".to_owned()),
        "{text}"
    );
}

#[test]
fn no_credentials_means_off_with_the_reason() {
    let cfg = ChannelsConfig::from_env_vars(Vec::<(String, String)>::new()).unwrap();
    let status = cfg.status();
    let slack = status.iter().find(|s| s.channel_type == "slack").unwrap();
    assert_eq!(
        slack.inbound,
        Availability::Off(
            "no signing secret (SLACK_SIGNING_SECRET or slack.signing_secret)".into()
        )
    );
    assert!(!slack.outbound.is_on());
    let tg = status
        .iter()
        .find(|s| s.channel_type == "telegram")
        .unwrap();
    assert!(!tg.inbound.is_on() && !tg.outbound.is_on());
    // Empty values are unset.
    let cfg = ChannelsConfig::from_env_vars([("SLACK_BOT_TOKEN", "")]).unwrap();
    assert!(cfg.slack.bot_token.is_none());
    // The adapter set has only the web chat, and hooks are 404.
    let ch = Channels::from_config(&cfg).unwrap();
    assert!(ch.get("slack", None).is_none());
    assert!(ch.get("web", None).is_some());
    let e = ch
        .verify_and_parse("slack", None, &HeaderMap::new(), b"{}", SystemTime::now())
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::NOT_FOUND);
    let e = ch
        .send(&OutboundMessage {
            channel_type: "slack".into(),
            instance: None,
            platform_id: "C1".into(),
            thread_id: None,
            text: "x".into(),
            message_id: None,
        })
        .unwrap_err();
    assert!(e.is_permanent());
}

#[test]
fn bad_values_are_refused_without_echoing_them() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("IRONCLAW_WEBHOOK_CI_SECRET", "short-SECRETX")],
            "webhooks.ci.secret",
        ),
        (
            vec![(
                "IRONCLAW_WEBHOOK_CI_SECRET",
                " whsec-SECRET-0123456789abcdef",
            )],
            "whitespace",
        ),
        (
            vec![("IRONCLAW_WEBHOOK_CI_URL", "http://example.org/hook")],
            "webhooks.ci.url",
        ),
        (
            vec![("IRONCLAW_WEBHOOK_CI_SECRT", WEBHOOK_SECRET)],
            "IRONCLAW_WEBHOOK_CI_SECRT",
        ),
        (
            vec![("IRONCLAW_WEBHOOK_SECRET", WEBHOOK_SECRET)],
            "IRONCLAW_WEBHOOK_SECRET",
        ),
        (
            vec![("IRONCLAW_WEBHOOK_C-I_SECRET", WEBHOOK_SECRET)],
            "instance part",
        ),
        (
            vec![("TELEGRAM_BOT_TOKEN", "TGTOKENsecret/../x")],
            "telegram.bot_token",
        ),
        (
            vec![("TELEGRAM_WEBHOOK_SECRET", "TGTOKENsecret!!!!!!!!")],
            "telegram.webhook_secret",
        ),
        (
            vec![("SLACK_BOT_TOKEN", "xoxb TGTOKENsecret")],
            "slack.bot_token",
        ),
        (
            vec![("SLACK_BOT_USER_ID", "not-an-id")],
            "slack.bot_user_id",
        ),
        (
            vec![("IRONCLAW_SLACK_API_BASE", "ftp://slack")],
            "slack.api_base",
        ),
    ];
    for (vars, expect) in cases {
        let e = ChannelsConfig::from_env_vars(vars.clone()).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(text.contains(expect), "{vars:?} → {text}");
        for (_, v) in &vars {
            if v.len() > 12 {
                assert!(!text.contains(v), "value echoed: {text}");
            }
        }
        assert!(!text.contains("SECRET-0123"), "{text}");
        assert!(!text.contains("TGTOKENsecret"), "{text}");
    }
}

#[test]
fn non_utf8_values_of_our_variables_are_refused() {
    use std::os::unix::ffi::OsStringExt;
    let e = ChannelsConfig::from_env_vars([(
        std::ffi::OsString::from("SLACK_BOT_TOKEN"),
        std::ffi::OsString::from_vec(vec![0xff, 0xfe]),
    )])
    .unwrap_err();
    assert!(matches!(e, ConfigError::Env { ref var, .. } if var == "SLACK_BOT_TOKEN"));
}

fn write_file(dir: &std::path::Path, name: &str, body: &str, mode: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(body.as_bytes()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn the_file_is_strict_and_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = format!(
        r#"{{"webhooks": {{"ci": {{"secret": "{WEBHOOK_SECRET}", "url": "http://127.0.0.1:9/hook"}}}},
            "slack": {{"signing_secret": "{SLACK_SIGNING}", "bot_token": "{SLACK_TOKEN}"}},
            "telegram": {{"bot_token": "{TG_TOKEN}", "webhook_secret": "{TG_SECRET}", "bot_username": "ironclaw_bot"}},
            "web": {{"max_messages_per_conversation": 50}},
            "outbound": {{"timeout_secs": 10, "max_attempts": 5, "max_wait_secs": 60}}}}"#
    );
    let p = write_file(dir, "ok.json", &good, 0o600);
    let cfg = ChannelsConfig::from_file(&p).unwrap();
    assert_eq!(cfg.web.max_messages_per_conversation, 50);
    assert_eq!(cfg.web.max_conversations, 1024);
    assert_eq!(cfg.outbound.retry.max_attempts, 5);
    assert!(cfg
        .status()
        .iter()
        .all(|s| s.inbound.is_on() && s.outbound.is_on()));
    let ch = Channels::from_config(&cfg).unwrap();
    assert!(ch.get("webhook", Some("ci")).is_some());
    assert!(ch.get("slack", None).is_some());
    assert!(ch.get("telegram", Some("telegram")).is_some());
    assert_no_secrets(&format!("{ch:?}"));

    // Readable by others → refused.
    let p = write_file(dir, "open.json", &good, 0o644);
    let e = ChannelsConfig::from_file(&p).unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");

    // Unknown field (a typo) → refused, naming the field, not the secrets.
    let typo = good.replace("\"signing_secret\"", "\"signing_secrt\"");
    let p = write_file(dir, "typo.json", &typo, 0o600);
    let e = ChannelsConfig::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("signing_secrt"), "{e}");
    assert_no_secrets(&e);

    // Invalid instance name.
    let bad = format!(r#"{{"webhooks": {{"CI/../x": {{"secret": "{WEBHOOK_SECRET}"}}}}}}"#);
    let p = write_file(dir, "name.json", &bad, 0o600);
    assert!(ChannelsConfig::from_file(&p).is_err());

    // Not JSON.
    let p = write_file(dir, "garbage.json", "{{{", 0o600);
    assert!(ChannelsConfig::from_file(&p).is_err());
}
