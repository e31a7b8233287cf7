//! Local mode's security settings from the environment. Its own test binary, as it sets the
//! process environment.

use tasks_local::Settings;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OTHER: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn signing_secrets_and_api_keys_come_from_the_environment() {
    std::env::remove_var("WEBHOOK_SIGNING_SECRETS");
    std::env::remove_var("API_KEYS");
    std::env::remove_var("WEBHOOK_NAMED_SIGNING_SECRETS");
    let defaults = Settings::from_env().unwrap();
    assert!(defaults.signing_secret_generated);
    assert!(defaults.named_signing_keys.is_empty());
    assert_eq!(defaults.signing_keys.secrets().len(), 1);
    assert!(defaults.api_keys.is_empty(), "open by default");

    std::env::set_var("WEBHOOK_SIGNING_SECRETS", format!("{OTHER}, {SECRET}"));
    std::env::set_var("API_KEYS", " key-one,,key-two ");
    std::env::set_var(
        "WEBHOOK_NAMED_SIGNING_SECRETS",
        format!("billing={SECRET},{OTHER}; crm={OTHER}"),
    );
    let configured = Settings::from_env().unwrap();
    assert_eq!(
        configured.named_signing_keys["billing"].secrets(),
        vec![SECRET, OTHER]
    );
    assert_eq!(configured.named_signing_keys["crm"].secrets(), vec![OTHER]);
    assert!(!configured.signing_secret_generated);
    assert_eq!(configured.signing_keys.secrets(), vec![OTHER, SECRET]);
    assert_eq!(configured.api_keys, vec!["key-one", "key-two"]);
    assert!(!format!("{configured:?}").contains(SECRET));

    std::env::set_var("WEBHOOK_SIGNING_SECRETS", "whsec_c2VjcmV0LXRvby1zaG9ydA==");
    let error = Settings::from_env().unwrap_err().to_string();
    assert!(error.contains("WEBHOOK_SIGNING_SECRETS"), "{error}");
    assert!(
        !error.contains("c2VjcmV0"),
        "the error repeats the secret: {error}"
    );

    std::env::remove_var("WEBHOOK_SIGNING_SECRETS");
    std::env::set_var("WEBHOOK_NAMED_SIGNING_SECRETS", "billing=whsec_c2VjcmV0");
    let error = Settings::from_env().unwrap_err().to_string();
    assert!(error.contains("WEBHOOK_NAMED_SIGNING_SECRETS"), "{error}");
    assert!(!error.contains("c2VjcmV0"), "{error}");
}
