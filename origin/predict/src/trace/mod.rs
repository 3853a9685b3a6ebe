//! Traces of sandbox creates: `(seconds, user, runtime)` events, read from CSV or the Azure Functions 2019 format.
//!
//! The native format is CSV with the header `timestamp,user,runtime`: whole seconds from the
//! trace's start, then two names (no commas). Events may come in any order; they are sorted.

mod azure;
mod csv;

use std::collections::HashMap;
use std::path::Path;

pub use azure::{format_azure_day, read_azure, AzureRow};
pub use csv::{read_csv, write_csv};

use crate::{PredictError, RuntimeId, Secs, UserId};

/// One sandbox create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub t: Secs,
    pub user: UserId,
    pub runtime: RuntimeId,
}

/// Events in time order, with the name tables their ids index.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub users: Vec<String>,
    pub runtimes: Vec<String>,
    pub events: Vec<Event>,
    user_ids: HashMap<String, UserId>,
    runtime_ids: HashMap<String, RuntimeId>,
}

impl Trace {
    /// The id of user `name`, adding it if new.
    pub fn user(&mut self, name: &str) -> UserId {
        if let Some(id) = self.user_ids.get(name) {
            return *id;
        }
        let id = UserId(self.users.len() as u32);
        self.users.push(name.to_owned());
        self.user_ids.insert(name.to_owned(), id);
        id
    }

    /// The id of runtime `name`, adding it if new.
    pub fn runtime(&mut self, name: &str) -> RuntimeId {
        if let Some(id) = self.runtime_ids.get(name) {
            return *id;
        }
        let id = RuntimeId(self.runtimes.len() as u32);
        self.runtimes.push(name.to_owned());
        self.runtime_ids.insert(name.to_owned(), id);
        id
    }

    /// Appends a create by names.
    pub fn push(&mut self, t: Secs, user: &str, runtime: &str) {
        let user = self.user(user);
        let runtime = self.runtime(runtime);
        self.events.push(Event { t, user, runtime });
    }

    /// Puts the events in time order (stable: same-second events keep their order).
    pub fn sort(&mut self) {
        self.events.sort_by_key(|e| e.t);
    }

    /// The name of a runtime id.
    pub fn runtime_name(&self, id: RuntimeId) -> &str {
        &self.runtimes[id.0 as usize]
    }

    /// Reads a trace, choosing the format by the first line: an Azure Functions header
    /// (`HashOwner,HashApp,HashFunction,Trigger,1,…`) or `timestamp,user,runtime`.
    /// Several Azure files are consecutive days, in the order given.
    pub fn read(paths: &[impl AsRef<Path>]) -> Result<Self, PredictError> {
        let mut trace = Trace::default();
        for (day, path) in paths.iter().enumerate() {
            let path = path.as_ref();
            let first = first_line(path)?;
            if first.starts_with("HashOwner,") {
                read_azure(path, day as u64, &mut trace)?;
            } else if paths.len() == 1 {
                read_csv(path, &mut trace)?;
            } else {
                return Err(PredictError::BadFile {
                    path: path.to_owned(),
                    reason: "several --trace files must all be Azure Functions day files (header HashOwner,HashApp,HashFunction,Trigger,1,…)".into(),
                });
            }
        }
        trace.sort();
        if trace.events.is_empty() {
            return Err(PredictError::Invalid("the trace has no events".into()));
        }
        Ok(trace)
    }
}

fn first_line(path: &Path) -> Result<String, PredictError> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|e| PredictError::io(path, e))?;
    let mut line = String::new();
    std::io::BufReader::new(f)
        .read_line(&mut line)
        .map_err(|e| PredictError::io(path, e))?;
    Ok(line.trim_start_matches('\u{feff}').trim_end().to_owned())
}

#[cfg(test)]
mod tests;
