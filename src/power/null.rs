//! Meters that measure nothing: the null meter, which says why energy is unavailable, and the
//! explicit estimate, which assumes a constant power the user states and labels every figure
//! derived from it ESTIMATE.

use std::time::Duration;

use super::{Domain, DomainKind, PowerMeter, Provenance, Reading, Scope};
use crate::error::{Error, Result};

/// A meter with no domains: "energy: unavailable (reason)". Never produces a number.
#[derive(Clone, Debug)]
pub struct NullMeter {
    reason: String,
}

impl NullMeter {
    /// A null meter that reports `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        NullMeter { reason: reason.into() }
    }

    /// Why energy is unavailable.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl PowerMeter for NullMeter {
    fn name(&self) -> &str {
        "none"
    }
    fn domains(&self) -> &[Domain] {
        &[]
    }
    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn read(&mut self, _out: &mut [Reading]) -> Result<()> {
        Ok(())
    }
    fn unavailable(&self) -> Option<&str> {
        Some(&self.reason)
    }
}

/// A constant power the user asserts (`--power estimate:WATTS`), e.g. a datasheet figure. Only
/// ever chosen explicitly; its provenance is [`Provenance::Estimated`], which reports print as
/// ESTIMATE.
#[derive(Clone, Debug)]
pub struct EstimateMeter {
    watts: f64,
    domains: Vec<Domain>,
}

impl EstimateMeter {
    /// An estimate of `watts` for the whole device. Rejects non-finite or non-positive values.
    pub fn new(watts: f64) -> Result<Self> {
        if !(watts.is_finite() && watts > 0.0) {
            return Err(Error::invalid(format!(
                "estimated power must be a positive number of watts, not {watts}"
            )));
        }
        let domains = vec![Domain {
            label: format!("assumed constant {watts} W"),
            scope: Scope::Unknown,
            provenance: Provenance::Estimated,
            kind: DomainKind::Power,
            within: None,
        }];
        Ok(EstimateMeter { watts, domains })
    }
}

impl PowerMeter for EstimateMeter {
    fn name(&self) -> &str {
        "estimate"
    }
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn period(&self) -> Duration {
        Duration::from_millis(500)
    }
    fn read(&mut self, out: &mut [Reading]) -> Result<()> {
        for r in out.iter_mut() {
            *r = Reading::Power { watts: self.watts };
        }
        Ok(())
    }
    fn notes(&self) -> Vec<String> {
        vec![format!("ESTIMATE: no meter was read; power assumed constant at {} W", self.watts)]
    }
}
