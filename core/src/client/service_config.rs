//! The service config (service_config.md): parsed once from
//! [`ChannelOptions::service_config`](super::ChannelOptions::service_config)
//! JSON into typed, validated structs. It picks the load-balancing policy,
//! holds per-method settings (timeout, wait-for-ready, message size limits,
//! retry or hedging policy, gRFC A6), retry throttling and the client-side
//! health-check service name (gRFC A17). An invalid config is an error at
//! channel creation, with a message naming the offending field.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{CallOptions, ChannelInner};
use crate::error::Error;
use crate::status::Code;

/// A load-balancing policy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LbPolicy {
    /// `pick_first` (the default): one connection, to the first address that
    /// connects (happy eyeballs, gRFC A61); sticky until it drops.
    PickFirst {
        /// `shuffleAddressList` (gRFC A62): shuffle the addresses first.
        shuffle_address_list: bool,
    },
    /// `round_robin`: a connection to every address; calls rotate over the READY ones.
    RoundRobin,
    /// `ring_hash` (gRFC A42, A76): consistent hashing over a ring of the
    /// addresses; a call with the same `requestHashHeader` value goes to the
    /// same backend while it is reachable. Connects on demand.
    RingHash {
        /// `minRingSize` (1024; at most 8M, capped at 4096 as in grpc-go).
        min_ring_size: u64,
        /// `maxRingSize` (4096; at most 8M, capped at 4096 as in grpc-go).
        max_ring_size: u64,
        /// `requestHashHeader` (lowercased): the header whose values are
        /// hashed for a call. Unset, or absent from a call: a random hash.
        request_hash_header: Option<String>,
    },
}

impl Default for LbPolicy {
    fn default() -> Self {
        LbPolicy::PickFirst { shuffle_address_list: false }
    }
}

/// `retryPolicy` of a method (gRFC A6).
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts including the first, 2..=5 (values above 5 are capped at 5).
    pub max_attempts: u32,
    /// Backoff before the first retry (> 0).
    pub initial_backoff: Duration,
    /// Cap of the backoff (> 0).
    pub max_backoff: Duration,
    /// Growth of the backoff per retry (> 0).
    pub backoff_multiplier: f64,
    /// Codes that are retried (non-empty).
    pub retryable_status_codes: Vec<Code>,
}

/// `hedgingPolicy` of a method (gRFC A6).
#[derive(Clone, Debug, PartialEq)]
pub struct HedgingPolicy {
    /// Attempts including the first, 2..=5 (values above 5 are capped at 5).
    pub max_attempts: u32,
    /// Delay between hedged attempts (0 sends all at once).
    pub hedging_delay: Duration,
    /// Codes that do not stop the other hedged attempts.
    pub non_fatal_status_codes: Vec<Code>,
}

/// `retryThrottling` (gRFC A6): a token bucket shared by the channel.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryThrottling {
    /// Bucket size, in (0, 1000].
    pub max_tokens: f64,
    /// Tokens added per successful call (> 0, kept to 3 decimal places).
    pub token_ratio: f64,
}

/// The settings one `methodConfig` entry gives the methods it names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MethodConfig {
    /// `waitForReady`: `true` makes calls wait for ready unless they ask for it
    /// themselves anyway (the call's own `true` always wins).
    pub wait_for_ready: Option<bool>,
    /// `timeout`: the call's deadline is the earlier of this and its own.
    pub timeout: Option<Duration>,
    /// `maxRequestMessageBytes`: the smaller of this and the channel's limit applies.
    pub max_request_message_bytes: Option<usize>,
    /// `maxResponseMessageBytes`: the smaller of this and the channel's limit applies.
    pub max_response_message_bytes: Option<usize>,
    /// `retryPolicy` (exclusive with `hedging_policy`).
    pub retry_policy: Option<RetryPolicy>,
    /// `hedgingPolicy` (exclusive with `retry_policy`).
    pub hedging_policy: Option<HedgingPolicy>,
}

/// A parsed, validated service config. `ServiceConfig::default()` is the
/// empty config (pick_first, no method settings).
#[derive(Clone, Debug, Default)]
pub struct ServiceConfig {
    lb_policy: LbPolicy,
    /// `/service/method` → config.
    methods: HashMap<String, Arc<MethodConfig>>,
    /// `service` → config for all its methods.
    services: HashMap<String, Arc<MethodConfig>>,
    default: Option<Arc<MethodConfig>>,
    retry_throttling: Option<RetryThrottling>,
    health_check_service: Option<String>,
}

impl ServiceConfig {
    /// Parses and validates a service config in its JSON form.
    pub fn parse(json: &str) -> Result<ServiceConfig, Error> {
        parse(json).map_err(|e| Error::invalid(format!("invalid service config: {e}")))
    }

    /// The load-balancing policy (`loadBalancingConfig`, else the legacy
    /// `loadBalancingPolicy`, else pick_first).
    pub fn lb_policy(&self) -> &LbPolicy {
        &self.lb_policy
    }

    /// The config for a method path (`/package.Service/Method`): an entry
    /// naming the service and method, else one naming the service, else the
    /// default entry (`"name": [{}]`).
    pub fn method_config(&self, path: &str) -> Option<&MethodConfig> {
        self.method_config_arc(path).map(|m| &**m)
    }

    pub(crate) fn method_config_arc(&self, path: &str) -> Option<&Arc<MethodConfig>> {
        if let Some(m) = self.methods.get(path) {
            return Some(m);
        }
        let service = path.strip_prefix('/').and_then(|p| p.rsplit_once('/')).map(|(s, _)| s);
        service.and_then(|s| self.services.get(s)).or(self.default.as_ref())
    }

    /// `retryThrottling`, if set.
    pub fn retry_throttling(&self) -> Option<&RetryThrottling> {
        self.retry_throttling.as_ref()
    }

    /// `healthCheckConfig.serviceName`: when set, round_robin subchannels
    /// watch `grpc.health.v1.Health` and take only SERVING backends.
    pub fn health_check_service(&self) -> Option<&str> {
        self.health_check_service.as_deref()
    }
}

/// What the service config and channel options make of one call: the
/// settings the call path applies. Built by [`call_config`].
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// The call's deadline: the earliest of its timeout, its absolute
    /// deadline and the method config's `timeout`.
    pub deadline: Option<tokio::time::Instant>,
    /// The call's flag, or true if the method config says `waitForReady: true`.
    pub wait_for_ready: bool,
    /// min(channel `max_send_message_size`, `maxRequestMessageBytes`).
    pub max_send_message_size: usize,
    /// min(channel `max_recv_message_size`, `maxResponseMessageBytes`).
    pub max_recv_message_size: usize,
    /// The matching method config (for the retry/hedging engine).
    pub method_config: Option<Arc<MethodConfig>>,
}

impl CallConfig {
    /// `opts` with this config's deadline (as an absolute deadline) and
    /// `wait_for_ready`.
    pub(crate) fn apply(&self, mut opts: CallOptions) -> CallOptions {
        opts.deadline = self.deadline.map(tokio::time::Instant::into_std);
        opts.timeout = None;
        opts.wait_for_ready = self.wait_for_ready;
        opts
    }
}

/// The call path's one entry point to the service config: what applies to
/// a call on `method` started with `opts`. Idempotent (applying its result
/// again changes nothing). Mirrors grpc-go: the config's `waitForReady` is
/// the default for calls; timeouts and size limits take the stricter value.
pub(crate) fn call_config(inner: &ChannelInner, method: &str, opts: &CallOptions) -> CallConfig {
    resolve_call_config(inner.connector.service_config(), &inner.opts, method, opts)
}

/// [`call_config`] with the parts spelled out (used by tests and `Channel::call_config`).
pub(crate) fn resolve_call_config(
    sc: &ServiceConfig,
    chan: &super::ChannelOptions,
    method: &str,
    opts: &CallOptions,
) -> CallConfig {
    let mc = sc.method_config_arc(method).cloned();
    let mut deadline = opts.deadline();
    let mut wait_for_ready = opts.wait_for_ready;
    let mut max_send = chan.max_send_message_size;
    let mut max_recv = chan.max_recv_message_size;
    if let Some(m) = &mc {
        if let Some(t) = m.timeout {
            let d = tokio::time::Instant::now() + t;
            deadline = Some(deadline.map_or(d, |x| x.min(d)));
        }
        // grpc-go: the config's value is the default and an explicit call
        // option wins. `CallOptions::wait_for_ready` cannot say "unset", so a
        // call's `true` wins and the config's `true` turns it on.
        if m.wait_for_ready == Some(true) {
            wait_for_ready = true;
        }
        if let Some(n) = m.max_request_message_bytes {
            max_send = max_send.min(n);
        }
        if let Some(n) = m.max_response_message_bytes {
            max_recv = max_recv.min(n);
        }
    }
    CallConfig {
        deadline,
        wait_for_ready,
        max_send_message_size: max_send,
        max_recv_message_size: max_recv,
        method_config: mc,
    }
}

type R<T> = Result<T, String>;

fn parse(json: &str) -> R<ServiceConfig> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the top level must be a JSON object")?;
    let mut sc = ServiceConfig::default();

    // loadBalancingConfig wins over the legacy loadBalancingPolicy.
    let mut chosen = None;
    if let Some(lbc) = obj.get("loadBalancingConfig") {
        let list = lbc.as_array().ok_or("loadBalancingConfig must be an array")?;
        for (i, entry) in list.iter().enumerate() {
            let e = entry.as_object().ok_or(format!("loadBalancingConfig[{i}] must be an object"))?;
            if e.len() != 1 {
                return Err(format!("loadBalancingConfig[{i}] must have exactly one key (the policy name)"));
            }
            let (name, cfg) = e.iter().next().expect("one key");
            let cfg = cfg.as_object().ok_or(format!("loadBalancingConfig[{i}].{name} must be an object"))?;
            match name.as_str() {
                "pick_first" => {
                    let shuffle = opt_bool(cfg, "shuffleAddressList", "pick_first")?.unwrap_or(false);
                    chosen = Some(LbPolicy::PickFirst { shuffle_address_list: shuffle });
                    break;
                }
                "round_robin" => {
                    chosen = Some(LbPolicy::RoundRobin);
                    break;
                }
                "ring_hash" => {
                    chosen = Some(parse_ring_hash(cfg)?);
                    break;
                }
                // Unknown policies are skipped: the first supported one wins.
                _ => continue,
            }
        }
        if chosen.is_none() {
            return Err("loadBalancingConfig names no supported policy (pick_first, round_robin, ring_hash)".into());
        }
    }
    if chosen.is_none() {
        if let Some(p) = obj.get("loadBalancingPolicy") {
            let p = p.as_str().ok_or("loadBalancingPolicy must be a string")?;
            chosen = Some(match p.to_ascii_lowercase().as_str() {
                "pick_first" => LbPolicy::default(),
                "round_robin" => LbPolicy::RoundRobin,
                _ => return Err(format!("unsupported loadBalancingPolicy {p:?} (pick_first, round_robin)")),
            });
        }
    }
    sc.lb_policy = chosen.unwrap_or_default();

    if let Some(mcs) = obj.get("methodConfig") {
        let mcs = mcs.as_array().ok_or("methodConfig must be an array")?;
        for (i, mc) in mcs.iter().enumerate() {
            let at = format!("methodConfig[{i}]");
            let mc = mc.as_object().ok_or(format!("{at} must be an object"))?;
            let cfg = Arc::new(parse_method_config(mc, &at)?);
            let names = match mc.get("name") {
                None => Vec::new(),
                Some(n) => n.as_array().ok_or(format!("{at}.name must be an array"))?.clone(),
            };
            for (j, n) in names.iter().enumerate() {
                let at = format!("{at}.name[{j}]");
                let n = n.as_object().ok_or(format!("{at} must be an object"))?;
                let service = opt_str(n, "service", &at)?.unwrap_or_default();
                let method = opt_str(n, "method", &at)?.unwrap_or_default();
                if service.is_empty() && !method.is_empty() {
                    return Err(format!("{at}: a method name needs a service name"));
                }
                let dup = if service.is_empty() {
                    sc.default.replace(cfg.clone()).is_some()
                } else if method.is_empty() {
                    sc.services.insert(service.to_string(), cfg.clone()).is_some()
                } else {
                    sc.methods.insert(format!("/{service}/{method}"), cfg.clone()).is_some()
                };
                if dup {
                    return Err(format!("{at}: duplicate name {service:?}/{method:?}"));
                }
            }
        }
    }

    if let Some(rt) = obj.get("retryThrottling") {
        let rt = rt.as_object().ok_or("retryThrottling must be an object")?;
        let max_tokens = req_f64(rt, "maxTokens", "retryThrottling")?;
        let ratio = req_f64(rt, "tokenRatio", "retryThrottling")?;
        if !(max_tokens > 0.0 && max_tokens <= 1000.0) {
            return Err(format!("retryThrottling.maxTokens must be in (0, 1000], got {max_tokens}"));
        }
        if ratio.is_nan() || ratio <= 0.0 {
            return Err(format!("retryThrottling.tokenRatio must be > 0, got {ratio}"));
        }
        sc.retry_throttling = Some(RetryThrottling { max_tokens, token_ratio: (ratio * 1000.0).trunc() / 1000.0 });
    }

    if let Some(h) = obj.get("healthCheckConfig") {
        let h = h.as_object().ok_or("healthCheckConfig must be an object")?;
        sc.health_check_service = Some(opt_str(h, "serviceName", "healthCheckConfig")?.unwrap_or_default().to_string());
    }
    Ok(sc)
}

/// `ring_hash`'s config (gRFC A42, A76; validated as grpc-go does).
fn parse_ring_hash(cfg: &Map<String, Value>) -> R<LbPolicy> {
    use super::lb::{DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE, RING_SIZE_CAP, RING_SIZE_LIMIT};
    let at = "ring_hash";
    let min = opt_size(cfg, "minRingSize", at)?.map_or(DEFAULT_MIN_RING_SIZE, |n| n as u64);
    let max = opt_size(cfg, "maxRingSize", at)?.map_or(DEFAULT_MAX_RING_SIZE, |n| n as u64);
    if min == 0 || min > RING_SIZE_LIMIT || max == 0 || max > RING_SIZE_LIMIT {
        return Err(format!("{at}: minRingSize and maxRingSize must be in 1..={RING_SIZE_LIMIT}"));
    }
    if min > max {
        return Err(format!("{at}: minRingSize ({min}) must not exceed maxRingSize ({max})"));
    }
    let header = match opt_str(cfg, "requestHashHeader", at)? {
        None | Some("") => None,
        Some(h) => {
            let h = h.to_ascii_lowercase();
            if !h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'z' | b'_' | b'.' | b'-')) {
                return Err(format!("{at}.requestHashHeader {h:?} is not a valid header name"));
            }
            if h.ends_with("-bin") {
                return Err(format!("{at}.requestHashHeader {h:?} must not be a binary (-bin) header"));
            }
            Some(h)
        }
    };
    Ok(LbPolicy::RingHash {
        min_ring_size: min.min(RING_SIZE_CAP),
        max_ring_size: max.min(RING_SIZE_CAP),
        request_hash_header: header,
    })
}

fn parse_method_config(mc: &Map<String, Value>, at: &str) -> R<MethodConfig> {
    let mut m = MethodConfig {
        wait_for_ready: opt_bool(mc, "waitForReady", at)?,
        timeout: opt_duration(mc, "timeout", at)?,
        max_request_message_bytes: opt_size(mc, "maxRequestMessageBytes", at)?,
        max_response_message_bytes: opt_size(mc, "maxResponseMessageBytes", at)?,
        ..Default::default()
    };
    if let Some(rp) = mc.get("retryPolicy") {
        let at = format!("{at}.retryPolicy");
        let rp = rp.as_object().ok_or(format!("{at} must be an object"))?;
        let max_attempts = req_attempts(rp, &at)?;
        let initial_backoff =
            opt_duration(rp, "initialBackoff", &at)?.ok_or(format!("{at}.initialBackoff is required"))?;
        let max_backoff = opt_duration(rp, "maxBackoff", &at)?.ok_or(format!("{at}.maxBackoff is required"))?;
        if initial_backoff.is_zero() || max_backoff.is_zero() {
            return Err(format!("{at}: initialBackoff and maxBackoff must be > 0"));
        }
        let backoff_multiplier = req_f64(rp, "backoffMultiplier", &at)?;
        if backoff_multiplier.is_nan() || backoff_multiplier <= 0.0 {
            return Err(format!("{at}.backoffMultiplier must be > 0"));
        }
        let retryable_status_codes = codes(rp, "retryableStatusCodes", &at)?;
        if retryable_status_codes.is_empty() {
            return Err(format!("{at}.retryableStatusCodes must name at least one code"));
        }
        m.retry_policy = Some(RetryPolicy {
            max_attempts,
            initial_backoff,
            max_backoff,
            backoff_multiplier,
            retryable_status_codes,
        });
    }
    if let Some(hp) = mc.get("hedgingPolicy") {
        let at = format!("{at}.hedgingPolicy");
        if m.retry_policy.is_some() {
            return Err(format!("{at}: a method config may have retryPolicy or hedgingPolicy, not both"));
        }
        let hp = hp.as_object().ok_or(format!("{at} must be an object"))?;
        let max_attempts = req_attempts(hp, &at)?;
        let hedging_delay = opt_duration(hp, "hedgingDelay", &at)?.unwrap_or_default();
        let non_fatal_status_codes =
            if hp.contains_key("nonFatalStatusCodes") { codes(hp, "nonFatalStatusCodes", &at)? } else { Vec::new() };
        m.hedging_policy = Some(HedgingPolicy { max_attempts, hedging_delay, non_fatal_status_codes });
    }
    Ok(m)
}

fn opt_bool(o: &Map<String, Value>, k: &str, at: &str) -> R<Option<bool>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{at}.{k} must be a boolean")),
    }
}

fn opt_str<'a>(o: &'a Map<String, Value>, k: &str, at: &str) -> R<Option<&'a str>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{at}.{k} must be a string")),
    }
}

fn req_f64(o: &Map<String, Value>, k: &str, at: &str) -> R<f64> {
    match o.get(k) {
        Some(Value::Number(n)) => n.as_f64().ok_or(format!("{at}.{k} is not a number")),
        Some(Value::String(s)) => s.parse().map_err(|_| format!("{at}.{k} is not a number")),
        None => Err(format!("{at}.{k} is required")),
        Some(_) => Err(format!("{at}.{k} must be a number")),
    }
}

/// maxAttempts: required, > 1; values over 5 are capped at 5 (gRFC A6).
fn req_attempts(o: &Map<String, Value>, at: &str) -> R<u32> {
    let n = req_f64(o, "maxAttempts", at)?;
    if n.fract() != 0.0 || n < 2.0 {
        return Err(format!("{at}.maxAttempts must be an integer > 1, got {n}"));
    }
    Ok(n.min(5.0) as u32)
}

/// An int64/uint32 field: a JSON number or a decimal string (proto3 JSON).
fn opt_size(o: &Map<String, Value>, k: &str, at: &str) -> R<Option<usize>> {
    let n = match o.get(k) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(_) => None,
    };
    n.map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX))).ok_or(format!("{at}.{k} must be a non-negative integer"))
}

/// A google.protobuf.Duration in JSON form: `"1.5s"`, up to 9 fractional digits.
fn opt_duration(o: &Map<String, Value>, k: &str, at: &str) -> R<Option<Duration>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_duration(s).map(Some).map_err(|e| format!("{at}.{k}: {e}")),
        Some(_) => Err(format!("{at}.{k} must be a duration string such as \"1.5s\"")),
    }
}

pub(crate) fn parse_duration(s: &str) -> R<Duration> {
    let bad = || format!("{s:?} is not a duration such as \"1.5s\"");
    let body = s.strip_suffix('s').ok_or_else(bad)?;
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) || (body.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    if secs > 315_576_000_000 {
        return Err(format!("{s:?} is out of range"));
    }
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().map_err(|_| bad())? };
    Ok(Duration::new(secs, nanos))
}

fn codes(o: &Map<String, Value>, k: &str, at: &str) -> R<Vec<Code>> {
    let list = o.get(k).ok_or(format!("{at}.{k} is required"))?;
    let list = list.as_array().ok_or(format!("{at}.{k} must be an array"))?;
    let mut out = Vec::new();
    for c in list {
        let code = match c {
            Value::String(s) => code_by_name(s).ok_or(format!("{at}.{k}: unknown status code {s:?}"))?,
            Value::Number(n) => match n.as_u64() {
                Some(v @ 0..=16) => Code::from_i32(v as i32),
                _ => return Err(format!("{at}.{k}: unknown status code {n}")),
            },
            _ => return Err(format!("{at}.{k} must hold code names or numbers")),
        };
        if code == Code::Ok {
            return Err(format!("{at}.{k} must not contain OK"));
        }
        if !out.contains(&code) {
            out.push(code);
        }
    }
    Ok(out)
}

fn code_by_name(s: &str) -> Option<Code> {
    (0..=16).map(Code::from_i32).find(|c| c.name().eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0.000000001s").unwrap(), Duration::from_nanos(1));
        for bad in ["1", "s", "-1s", "1.s", ".5s", "1.0000000001s", "1ms", "1 s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ring_hash_config() {
        let lb = |json: &str| ServiceConfig::parse(json).map(|sc| sc.lb_policy().clone());
        assert_eq!(
            lb(r#"{"loadBalancingConfig":[{"ring_hash":{"minRingSize":10,"maxRingSize":"20","requestHashHeader":"X-User"}}]}"#)
                .unwrap(),
            LbPolicy::RingHash { min_ring_size: 10, max_ring_size: 20, request_hash_header: Some("x-user".into()) }
        );
        assert_eq!(
            lb(r#"{"loadBalancingConfig":[{"ring_hash":{}}]}"#).unwrap(),
            LbPolicy::RingHash { min_ring_size: 1024, max_ring_size: 4096, request_hash_header: None }
        );
        // Above grpc-go's cap: capped; above 8M or min > max: invalid.
        assert_eq!(
            lb(r#"{"loadBalancingConfig":[{"ring_hash":{"minRingSize":5000,"maxRingSize":8388608}}]}"#).unwrap(),
            LbPolicy::RingHash { min_ring_size: 4096, max_ring_size: 4096, request_hash_header: None }
        );
        for bad in [
            r#"{"minRingSize":8388609,"maxRingSize":8388609}"#,
            r#"{"minRingSize":0}"#,
            r#"{"minRingSize":20,"maxRingSize":10}"#,
            r#"{"requestHashHeader":"x-key-bin"}"#,
            r#"{"requestHashHeader":":path"}"#,
            r#"{"requestHashHeader":3}"#,
        ] {
            let json = format!(r#"{{"loadBalancingConfig":[{{"ring_hash":{bad}}}]}}"#);
            assert!(lb(&json).is_err(), "{bad}");
        }
    }

    #[test]
    fn method_lookup_order() {
        let sc = ServiceConfig::parse(
            r#"{"methodConfig":[
                {"name":[{"service":"a.S","method":"M"}],"timeout":"1s"},
                {"name":[{"service":"a.S"}],"timeout":"2s"},
                {"name":[{}],"timeout":"3s"}]}"#,
        )
        .unwrap();
        let t = |p: &str| sc.method_config(p).and_then(|m| m.timeout).map(|d| d.as_secs());
        assert_eq!(t("/a.S/M"), Some(1));
        assert_eq!(t("/a.S/N"), Some(2));
        assert_eq!(t("/b.S/M"), Some(3));
    }
}
