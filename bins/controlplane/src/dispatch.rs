//! Delivery's dispatcher: outbound chat rows to the channel adapters.

use std::sync::Arc;

use ironclaw_channels::{Channels, OutboundMessage, SendError};
use ironclaw_contract::ids::MessageId;
use ironclaw_delivery::{Address, Dispatcher, Failure};

pub struct ChannelDispatcher(pub Arc<Channels>);

impl Dispatcher for ChannelDispatcher {
    fn send(
        &self,
        to: &Address,
        text: &str,
        message_id: &MessageId,
    ) -> Result<Option<String>, Failure> {
        let msg = OutboundMessage {
            channel_type: to.channel_type.clone(),
            instance: to.instance.clone().filter(|i| i != &to.channel_type),
            platform_id: to.platform_id.clone(),
            thread_id: to.thread_id.clone(),
            text: text.to_owned(),
            message_id: Some(message_id.as_str().to_owned()),
        };
        match self.0.send(&msg) {
            Ok(receipt) => Ok(receipt.first_id().map(str::to_owned)),
            Err(e @ SendError::Permanent { .. }) => Err(Failure::permanent(e.to_string())),
            Err(e) => {
                let mut f = Failure::retryable(e.to_string());
                f.retry_after = e.retry_after();
                Err(f)
            }
        }
    }
}
