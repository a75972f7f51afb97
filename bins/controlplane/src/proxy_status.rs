//! The model proxy as `/v1/status` reports it: an adapter from the proxy's own stats to
//! the API's [`ModelProxyView`], so the API crate needs no dependency on the proxy.
//! Not for metrics or auditing (the proxy audits every call itself).

use std::sync::Arc;

use ironclaw_api::{ModelProxyCounters, ModelProxyView};
use ironclaw_contract::ids::SessionId;
use ironclaw_modelproxy::ModelProxy;

pub struct ProxyView(pub Arc<ModelProxy>);

impl ModelProxyView for ProxyView {
    fn counters(&self) -> ModelProxyCounters {
        let st = self.0.stats();
        ModelProxyCounters {
            providers: self
                .0
                .providers()
                .iter()
                .map(|p| p.prefix().to_owned())
                .collect(),
            calls: st.calls,
            refusals: st.refusals,
            input_tokens: st.input_tokens,
            output_tokens: st.output_tokens,
        }
    }

    fn is_parked(&self, session: &SessionId) -> bool {
        self.0.is_parked(session)
    }
}
