//! The `--config` file: a TOML file whose top-level keys are the long flag names (`port = 3000`,
//! `adapter = "redis"`) and whose tables are the sections an application reads (`[gateway]`).
//!
//! The file's values become the command line's defaults before clap parses it, so a flag or a
//! `SWITCHBOARD_*` variable still wins over the file, and every value goes through the same
//! parser as the flag it stands for. A missing file, a key that is no flag, a value the flag
//! refuses or a section nobody reads stops the start with the file and the key named. Sections
//! stay as text for their application to parse into its own typed configuration.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};

/// The flag that names the file, and its variable.
pub const FLAG: &str = "config";
/// The variable that names the file when `--config` is not given.
pub const ENV: &str = "SWITCHBOARD_CONFIG";
/// The largest config file read: a config file is a few kilobytes; more is a wrong path.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Flags that cannot come from the file: they are about the command line itself.
const NOT_SETTINGS: [&str; 3] = [FLAG, "help", "version"];

/// Why the config file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read the config file {path}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("the config file {path} is over {MAX_FILE_BYTES} bytes: is it the right file?")]
    TooLarge {
        /// The path given.
        path: PathBuf,
    },
    /// The file is not valid TOML.
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The path given.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
    /// A top-level key is not a setting.
    #[error("{path}: unknown key `{key}`: {why}")]
    UnknownKey {
        /// The path given.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is accepted instead.
        why: String,
    },
    /// A value the flag refuses.
    #[error("{path}: key `{key}`: {why}")]
    Value {
        /// The path given.
        path: PathBuf,
        /// The key.
        key: String,
        /// Why the flag refuses it.
        why: String,
    },
}

/// A config file read and checked against a command line; see the module docs.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    text: String,
    table: toml::Table,
}

impl ConfigFile {
    /// The file named by `--config` in `args` (the process's arguments, program name first), or
    /// else by `env` (the value of [`ENV`]); `None` when neither names one.
    pub fn locate(args: impl IntoIterator<Item = OsString>, env: Option<OsString>) -> Option<PathBuf> {
        let long = format!("--{FLAG}");
        let prefix = format!("--{FLAG}=");
        let mut args = args.into_iter().skip(1);
        while let Some(arg) = args.next() {
            let Some(text) = arg.to_str() else { continue };
            if text == "--" {
                break;
            }
            if text == long {
                return args.next().map(PathBuf::from);
            }
            if let Some(path) = text.strip_prefix(&prefix) {
                return Some(PathBuf::from(path));
            }
        }
        env.filter(|v| !v.is_empty()).map(PathBuf::from)
    }

    /// Reads and parses the file (not yet checked against any flag).
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let read_error = |source| ConfigFileError::Read { path: path.to_owned(), source };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > MAX_FILE_BYTES {
            return Err(ConfigFileError::TooLarge { path: path.to_owned() });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Self::parse(path, text)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(path: &Path, text: String) -> Result<Self, ConfigFileError> {
        let table = text.parse::<toml::Table>().map_err(|e| ConfigFileError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        Ok(Self { path: path.to_owned(), text, table })
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole text, for an application to deserialize its section from (with line numbers in
    /// its errors).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// `command` with the file's values as its defaults, each checked by its flag's own parser.
    /// Tables must be among `sections` (what the applications read).
    pub fn apply(&self, mut command: Command, sections: &[&str]) -> Result<Command, ConfigFileError> {
        for (key, value) in &self.table {
            if value.is_table() {
                if sections.contains(&key.as_str()) {
                    continue;
                }
                return Err(self.unknown(key, format!("the sections are [{}]", sections.join("], ["))));
            }
            let Some(arg) = command
                .get_arguments()
                .find(|a| a.get_long() == Some(key.as_str()) && !NOT_SETTINGS.contains(&key.as_str()))
            else {
                return Err(self.unknown(
                    key,
                    "keys are the long flag names of `switchboard --help` (e.g. `port`, `redis-url`)".into(),
                ));
            };
            let values = self.values(key, value, arg)?;
            self.check(&command, key, &values)?;
            let id = arg.get_id().clone();
            command = command.mut_arg(id, |a| a.default_values(values));
        }
        Ok(command)
    }

    fn unknown(&self, key: &str, why: String) -> ConfigFileError {
        ConfigFileError::UnknownKey { path: self.path.clone(), key: key.to_owned(), why }
    }

    fn bad_value(&self, key: &str, why: impl Into<String>) -> ConfigFileError {
        ConfigFileError::Value { path: self.path.clone(), key: key.to_owned(), why: why.into() }
    }

    /// The value as the flag's text values: a list only where the flag takes several.
    fn values(
        &self,
        key: &str,
        value: &toml::Value,
        arg: &clap::Arg,
    ) -> Result<Vec<String>, ConfigFileError> {
        let many = arg.get_value_delimiter().is_some() || matches!(arg.get_action(), ArgAction::Append);
        match value {
            toml::Value::Array(items) if many => {
                items.iter().map(|item| self.scalar(key, item)).collect::<Result<Vec<_>, _>>()
            }
            toml::Value::Array(_) => Err(self.bad_value(key, "takes one value, not a list")),
            scalar => Ok(vec![self.scalar(key, scalar)?]),
        }
    }

    fn scalar(&self, key: &str, value: &toml::Value) -> Result<String, ConfigFileError> {
        match value {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(self.bad_value(key, format!("a {} is not a value of --{key}", other.type_str()))),
        }
    }

    /// Runs the flag's parser on `values`, alone (no variable read), so the error names the file.
    fn check(&self, command: &Command, key: &str, values: &[String]) -> Result<(), ConfigFileError> {
        let probe = command.clone().mut_args(|a| a.env(clap::builder::Resettable::Reset));
        let name = probe.get_name().to_owned();
        let args = std::iter::once(name).chain(values.iter().map(|v| format!("--{key}={v}")));
        match probe.try_get_matches_from(args) {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                Err(self.bad_value(key, first.trim_start_matches("error: ").to_owned()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{FromArgMatches as _, Parser};

    use super::*;
    use crate::node::NodeOptions;

    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long = "config")]
        _config: Option<PathBuf>,
        #[command(flatten)]
        node: NodeOptions,
    }

    fn options(file: &str, args: &[&str]) -> Result<NodeOptions, String> {
        use clap::CommandFactory as _;
        let file = ConfigFile::parse(Path::new("test.toml"), file.to_owned()).map_err(|e| e.to_string())?;
        let command = file.apply(Cli::command(), &["gateway"]).map_err(|e| e.to_string())?;
        let matches = command
            .try_get_matches_from(std::iter::once("switchboard").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Cli::from_arg_matches(&matches).map(|c| c.node).map_err(|e| e.to_string())
    }

    #[test]
    fn file_values_are_defaults_that_flags_override() {
        let file = "port = 4000\nadapter = \"redis\"\nredis-url = [\"redis://a:1\", \"redis://b:2\"]\n\
                    allow-upgrades = false\n[gateway]\nanything = 1\n";
        let o = options(file, &[]).map(|o| (o.port, o.adapter, o.redis_urls, o.allow_upgrades));
        assert_eq!(
            o,
            Ok((
                4000,
                crate::node::AdapterKind::Redis,
                vec!["redis://a:1".into(), "redis://b:2".into()],
                false
            ))
        );
        assert_eq!(options(file, &["--port", "5000"]).map(|o| o.port), Ok(5000));
    }

    #[test]
    fn an_unknown_key_is_refused_with_the_file_and_key() {
        let e = options("prot = 4000\n", &[]).err().unwrap_or_default();
        assert!(e.starts_with("test.toml: unknown key `prot`: keys are the long flag names"), "{e}");
        let e = options("help = true\n", &[]).err().unwrap_or_default();
        assert!(e.starts_with("test.toml: unknown key `help`"), "{e}");
        let e = options("[gatway]\nx = 1\n", &[]).err().unwrap_or_default();
        assert_eq!(e, "test.toml: unknown key `gatway`: the sections are [gateway]");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_with_the_flag_parsers_reason() {
        let e = options("port = \"http\"\n", &[]).err().unwrap_or_default();
        assert!(e.starts_with("test.toml: key `port`: invalid value 'http' for '--port <PORT>'"), "{e}");
        let e = options("port = 70000\n", &[]).err().unwrap_or_default();
        assert!(e.starts_with("test.toml: key `port`: invalid value '70000'"), "{e}");
        let e = options("port = [1, 2]\n", &[]).err().unwrap_or_default();
        assert_eq!(e, "test.toml: key `port`: takes one value, not a list");
        let e = options("adapter = \"kafka\"\n", &[]).err().unwrap_or_default();
        assert!(e.starts_with("test.toml: key `adapter`: invalid value 'kafka'"), "{e}");
        let e = options("host = { a = 1 }\n", &[]).err().unwrap_or_default();
        assert!(e.starts_with("test.toml: unknown key `host`"), "a table is a section: {e}");
    }

    #[test]
    fn a_missing_or_broken_file_is_refused() {
        let missing = ConfigFile::load(Path::new("/nonexistent/switchboard.toml")).map(|_| ());
        let e = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(e, "cannot read the config file /nonexistent/switchboard.toml");
        let broken = ConfigFile::parse(Path::new("b.toml"), "port = \n".into()).map(|_| ());
        let e = broken.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("the config file b.toml is not valid TOML: "), "{e}");
    }

    #[test]
    fn the_file_is_found_from_the_flag_then_the_variable() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let env = Some(OsString::from("env.toml"));
        assert_eq!(
            ConfigFile::locate(args(&["sb", "--port", "1", "--config", "a.toml"]), env.clone()),
            Some("a.toml".into())
        );
        assert_eq!(ConfigFile::locate(args(&["sb", "--config=b.toml"]), env.clone()), Some("b.toml".into()));
        assert_eq!(ConfigFile::locate(args(&["sb"]), env), Some("env.toml".into()));
        assert_eq!(ConfigFile::locate(args(&["sb"]), None), None);
    }
}
