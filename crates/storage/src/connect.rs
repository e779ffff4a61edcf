//! From a configured URL, its options and the process environment to a store, configured the way
//! each store's users configure it (docs/storage.md):
//!
//! - S3: `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//!   `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN`,
//!   `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, …); with no keys anywhere, the instance's role.
//! - Azure: `AZURE_*` variables (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
//!   `AZURE_STORAGE_SAS_KEY`, `AZURE_CLIENT_ID`, …), or a SAS token as the URL's query; with
//!   none, a managed identity.
//! - GCS: `GOOGLE_*` variables (`GOOGLE_APPLICATION_CREDENTIALS`, `GOOGLE_SERVICE_ACCOUNT`, …);
//!   with none, application default credentials, then the instance's service account.
//!
//! Options from the configuration win over the environment key by key, except credentials, which
//! come whole from one source: keys from the configuration paired with a session token left in
//! the environment by some other tool would sign every request wrong. Option names
//! `object_store` does not know are refused, naming the key: dropped silently, a misspelt
//! secret would leave the store falling back to an instance role it may not have. Errors never
//! carry an option's value or a credential from the environment.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};
use secrecy::{ExposeSecret, SecretString};

use crate::{StorageError, StoreUrl};

/// A store ready to use, where its prefix starts, and what makes two of them one store.
pub(crate) struct Connected {
    pub store: Box<dyn ObjectStore>,
    pub prefix: Path,
    /// Equal for two locations only if one's client can reach the other's objects: the same
    /// bucket on the same endpoint (or account), never merely the same bucket name.
    pub identity: String,
}

/// Each `memory:///` is a store of its own.
static MEMORY_STORES: AtomicU64 = AtomicU64::new(0);

/// Options and environment merged for one store kind, with every value that must not be printed.
struct Merged<K> {
    pairs: Vec<(K, String)>,
    secrets: Vec<String>,
}

/// A store's configuration: `env` (already filtered to its prefix) overlaid with `options`,
/// credentials taken whole from the options when they give any.
fn merge<K: FromStr + Copy>(
    url: &StoreUrl,
    kind: &str,
    env: &[(String, String)],
    options: &[(String, String)],
    is_credential: fn(&K) -> bool,
) -> Result<Merged<K>, StorageError> {
    let mut from_options = Vec::with_capacity(options.len());
    for (name, value) in options {
        let key = name
            .to_ascii_lowercase()
            .parse::<K>()
            .map_err(|_| StorageError::Url {
                url: url.redacted(),
                reason: format!("unknown option `{name}` for {kind} stores"),
            })?;
        from_options.push((key, value.clone()));
    }
    let configured_credentials = from_options.iter().any(|(key, _)| is_credential(key));
    let mut pairs = Vec::new();
    let mut secrets: Vec<String> = options.iter().map(|(_, value)| value.clone()).collect();
    for (name, value) in env {
        let Ok(key) = name.to_ascii_lowercase().parse::<K>() else {
            continue;
        };
        if is_credential(&key) {
            if configured_credentials {
                continue;
            }
            secrets.push(value.clone());
        }
        pairs.push((key, value.clone()));
    }
    pairs.extend(from_options);
    Ok(Merged { pairs, secrets })
}

fn aws_credential(key: &AmazonS3ConfigKey) -> bool {
    matches!(
        key,
        AmazonS3ConfigKey::AccessKeyId
            | AmazonS3ConfigKey::SecretAccessKey
            | AmazonS3ConfigKey::Token
            | AmazonS3ConfigKey::WebIdentityTokenFile
            | AmazonS3ConfigKey::RoleArn
            | AmazonS3ConfigKey::ContainerCredentialsRelativeUri
            | AmazonS3ConfigKey::ContainerCredentialsFullUri
            | AmazonS3ConfigKey::ContainerAuthorizationTokenFile
    )
}

fn azure_credential(key: &AzureConfigKey) -> bool {
    matches!(
        key,
        AzureConfigKey::AccessKey
            | AzureConfigKey::SasKey
            | AzureConfigKey::Token
            | AzureConfigKey::ClientId
            | AzureConfigKey::ClientSecret
            | AzureConfigKey::AuthorityId
            | AzureConfigKey::FederatedTokenFile
            | AzureConfigKey::UseAzureCli
            | AzureConfigKey::MsiEndpoint
            | AzureConfigKey::ObjectId
            | AzureConfigKey::MsiResourceId
            | AzureConfigKey::CredentialType
    )
}

fn google_credential(key: &GoogleConfigKey) -> bool {
    matches!(
        key,
        GoogleConfigKey::ServiceAccount
            | GoogleConfigKey::ServiceAccountKey
            | GoogleConfigKey::ApplicationCredentials
            | GoogleConfigKey::BearerToken
    )
}

/// `message` without any of `secrets`, and with the URL in its redacted form.
fn scrub(message: String, url: &StoreUrl, secrets: &[String]) -> String {
    let mut message = message.replace(url.expose(), &url.redacted());
    // Longest first: a secret that contains another is removed whole.
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    for secret in secrets {
        message = message.replace(secret.as_str(), "[REDACTED]");
    }
    message
}

/// The store `url` names, configured from `options` over `env` (the process environment, as
/// name and value).
pub(crate) fn connect(
    url: &StoreUrl,
    parsed: &url::Url,
    options: &BTreeMap<String, SecretString>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Connected, StorageError> {
    let invalid = |reason: String| StorageError::Url {
        url: url.redacted(),
        reason,
    };
    let (scheme, prefix) =
        ObjectStoreScheme::parse(parsed).map_err(|_| invalid("unsupported scheme".into()))?;
    let mut options: Vec<(String, String)> = options
        .iter()
        .map(|(key, value)| (key.clone(), value.expose_secret().to_owned()))
        .collect();
    // What the URL itself carries beyond the store and prefix: secrets to scrub, whatever the store.
    let mut secrets: Vec<String> = parsed.password().map(str::to_owned).into_iter().collect();
    secrets.extend(parsed.query().map(str::to_owned));
    secrets.extend(parsed.query_pairs().map(|(_, value)| value.into_owned()));
    let refuse_credentials_in_url = |kind: &str| {
        if parsed.password().is_some() || parsed.query().is_some() {
            return Err(invalid(format!(
                "{kind} URLs carry no credentials: give them as options or in the environment"
            )));
        }
        Ok(())
    };
    let env: Vec<(String, String)> = env.into_iter().collect();
    let env_with = |prefix: &str| -> Vec<(String, String)> {
        env.iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .cloned()
            .collect()
    };
    let host = parsed.host_str().unwrap_or_default();
    let built = match scheme {
        ObjectStoreScheme::Local | ObjectStoreScheme::Memory => {
            if !options.is_empty() {
                return Err(invalid(format!(
                    "{} stores take no options",
                    parsed.scheme()
                )));
            }
            refuse_credentials_in_url(parsed.scheme())?;
            return Ok(if scheme == ObjectStoreScheme::Local {
                Connected {
                    // A write returns once its bytes and directory entry are on disk, as a
                    // remote store's 200 does: a download is acked, and Zoom's copy may be
                    // deleted, on the strength of it. Without this a crash of the machine
                    // could lose a file already reported stored.
                    store: Box::new(LocalFileSystem::new().with_fsync(true)),
                    prefix,
                    identity: "file://".into(),
                }
            } else {
                Connected {
                    store: Box::new(InMemory::new()),
                    prefix,
                    identity: format!("memory://{}", MEMORY_STORES.fetch_add(1, Ordering::Relaxed)),
                }
            });
        }
        ObjectStoreScheme::AmazonS3 => {
            refuse_credentials_in_url("S3")?;
            let merged = merge(url, "S3", &env_with("AWS_"), &options, aws_credential)?;
            secrets.extend(merged.secrets);
            let builder = merged
                .pairs
                .into_iter()
                .fold(AmazonS3Builder::new(), |builder, (key, value)| {
                    builder.with_config(key, value)
                });
            let endpoint = builder
                .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
                .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint))
                .unwrap_or_default();
            let identity = format!("s3://{host} at {endpoint}");
            builder
                .with_url(parsed.as_str())
                .build()
                .map(|store| (Box::new(store) as Box<dyn ObjectStore>, identity))
        }
        ObjectStoreScheme::MicrosoftAzure => {
            if parsed.password().is_some() {
                return Err(invalid(
                    "Azure URLs carry a SAS token as their query, never a password".into(),
                ));
            }
            // A SAS URL, as the portal and `az` hand them out: its query is the token. It is a
            // credential given in the configuration, as an option would be (which it yields to).
            if let Some(sas) = parsed.query()
                && !options.iter().any(|(key, _)| {
                    key.to_ascii_lowercase()
                        .parse::<AzureConfigKey>()
                        .is_ok_and(|key| azure_credential(&key))
                })
            {
                options.push(("azure_storage_sas_key".into(), sas.to_owned()));
            }
            let merged = merge(
                url,
                "Azure",
                &env_with("AZURE_"),
                &options,
                azure_credential,
            )?;
            secrets.extend(merged.secrets);
            let builder = merged
                .pairs
                .into_iter()
                .fold(MicrosoftAzureBuilder::new(), |builder, (key, value)| {
                    builder.with_config(key, value)
                });
            let identity = format!(
                "az://{}@{host} in {} at {} {}",
                parsed.username(),
                builder
                    .get_config_value(&AzureConfigKey::AccountName)
                    .unwrap_or_default(),
                builder
                    .get_config_value(&AzureConfigKey::Endpoint)
                    .unwrap_or_default(),
                builder
                    .get_config_value(&AzureConfigKey::UseEmulator)
                    .unwrap_or_default(),
            );
            // The token is in the builder now; the URL object_store sees is the store and prefix.
            let mut bare = parsed.clone();
            bare.set_query(None);
            builder
                .with_url(bare.as_str())
                .build()
                .map(|store| (Box::new(store) as Box<dyn ObjectStore>, identity))
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            refuse_credentials_in_url("GCS")?;
            let merged = merge(
                url,
                "GCS",
                &env_with("GOOGLE_"),
                &options,
                google_credential,
            )?;
            secrets.extend(merged.secrets);
            let builder = merged
                .pairs
                .into_iter()
                .fold(GoogleCloudStorageBuilder::new(), |builder, (key, value)| {
                    builder.with_config(key, value)
                });
            let identity = format!(
                "gs://{host} at {}",
                builder
                    .get_config_value(&GoogleConfigKey::BaseUrl)
                    .unwrap_or_default()
            );
            builder
                .with_url(parsed.as_str())
                .build()
                .map(|store| (Box::new(store) as Box<dyn ObjectStore>, identity))
        }
        _ => return Err(invalid("unsupported scheme".into())),
    };
    let (store, identity) =
        built.map_err(|error| invalid(scrub(error.to_string(), url, &secrets)))?;
    Ok(Connected {
        store,
        prefix,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), SecretString::from(*value)))
            .collect()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn connect_to(
        url: &str,
        options: &BTreeMap<String, SecretString>,
        env: Vec<(String, String)>,
    ) -> Result<Connected, StorageError> {
        let url = StoreUrl::new(url);
        let parsed = url::Url::parse(url.expose()).expect("URL");
        connect(&url, &parsed, options, env)
    }

    #[test]
    fn a_local_store_writes_durably_like_a_remote_one() {
        let local = connect_to("file:///var/recordings", &BTreeMap::new(), Vec::new())
            .map_err(|error| error.to_string())
            .expect("connected");
        // The store's own description is the only place its fsync setting shows.
        let described = format!("{:?}", local.store);
        assert!(described.contains("fsync: true"), "{described}");
    }

    #[test]
    fn a_misspelt_option_is_refused_by_name_without_its_value() {
        let error = connect_to(
            "s3://bucket/prefix",
            &options(&[("aws_secret_acess_key", "SECRET-VALUE")]),
            Vec::new(),
        )
        .err()
        .expect("refused");
        let message = format!("{error} {error:?}");
        assert!(message.contains("aws_secret_acess_key"), "{message}");
        assert!(!message.contains("SECRET-VALUE"), "{message}");
    }

    #[test]
    fn build_errors_never_carry_a_secret() {
        // A secret key without its key id: object_store refuses to build.
        for (options, env) in [
            (
                options(&[("aws_secret_access_key", "OPTION-SECRET")]),
                Vec::new(),
            ),
            (
                BTreeMap::new(),
                env(&[("AWS_SECRET_ACCESS_KEY", "ENV-SECRET")]),
            ),
            // A value where a flag belongs is echoed by object_store's parser.
            (
                options(&[("aws_skip_signature", "OPTION-SECRET")]),
                Vec::new(),
            ),
        ] {
            let error = connect_to("s3://bucket/prefix", &options, env)
                .err()
                .expect("refused");
            let message = format!("{error} {error:?}");
            assert!(!message.contains("SECRET"), "{message}");
        }
        let error = connect_to(
            "az://container/prefix?sv=2024&sig=SAS-SECRET",
            &options(&[("azure_storage_use_emulator", "SAS-SECRET-TOO")]),
            Vec::new(),
        )
        .err()
        .expect("refused");
        let message = format!("{error} {error:?}");
        assert!(!message.contains("SECRET"), "{message}");
    }

    #[test]
    fn credentials_come_whole_from_the_options_when_they_give_any() {
        let merged = merge::<AmazonS3ConfigKey>(
            &StoreUrl::new("s3://bucket"),
            "S3",
            &env(&[
                ("AWS_ACCESS_KEY_ID", "env-key"),
                ("AWS_SESSION_TOKEN", "env-token"),
                ("AWS_REGION", "env-region"),
                ("AWS_ENDPOINT_URL", "http://env-endpoint"),
            ]),
            &[
                ("aws_access_key_id".into(), "option-key".into()),
                ("aws_secret_access_key".into(), "option-secret".into()),
                ("aws_region".into(), "option-region".into()),
            ],
            aws_credential,
        )
        .expect("merged");
        let builder = merged
            .pairs
            .into_iter()
            .fold(AmazonS3Builder::new(), |b, (k, v)| b.with_config(k, v));
        let value = |key| builder.get_config_value(&key);
        assert_eq!(
            value(AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("option-key")
        );
        assert_eq!(value(AmazonS3ConfigKey::Token), None, "no foreign token");
        assert_eq!(
            value(AmazonS3ConfigKey::Region).as_deref(),
            Some("option-region"),
            "options win"
        );
        assert_eq!(
            value(AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://env-endpoint"),
            "the environment fills in what options leave out"
        );
    }

    #[test]
    fn the_same_bucket_name_elsewhere_is_another_store() {
        let none = BTreeMap::new();
        let keys = [("aws_access_key_id", "k"), ("aws_secret_access_key", "s")];
        let aws = connect_to("s3://recordings/a", &options(&keys), Vec::new()).expect("aws");
        let mut local_keys = keys.to_vec();
        local_keys.push(("aws_endpoint", "http://127.0.0.1:9000"));
        let minio =
            connect_to("s3://recordings/b", &options(&local_keys), Vec::new()).expect("minio");
        let aws_too = connect_to("s3://recordings/c", &options(&keys), Vec::new()).expect("aws");
        assert_ne!(aws.identity, minio.identity);
        assert_eq!(aws.identity, aws_too.identity);
        let one = connect_to(
            "az://recordings",
            &options(&[
                ("azure_storage_account_name", "one"),
                ("azure_storage_account_key", "a2V5"),
            ]),
            Vec::new(),
        )
        .expect("azure");
        let two = connect_to(
            "az://recordings",
            &options(&[
                ("azure_storage_account_name", "two"),
                ("azure_storage_account_key", "a2V5"),
            ]),
            Vec::new(),
        )
        .expect("azure");
        assert_ne!(one.identity, two.identity);
        let first = connect_to("memory:///", &none, Vec::new()).expect("memory");
        let second = connect_to("memory:///", &none, Vec::new()).expect("memory");
        assert_ne!(first.identity, second.identity);
    }

    #[test]
    fn credentials_in_an_s3_url_are_refused_not_ignored() {
        let error = connect_to(
            "s3://key:s3cr3t@bucket/prefix",
            &BTreeMap::new(),
            Vec::new(),
        )
        .err()
        .expect("refused");
        let message = format!("{error} {error:?}");
        assert!(!message.contains("s3cr3t"), "{message}");
        assert!(
            message.contains("options or in the environment"),
            "{message}"
        );
    }
}
