"""uptake-sdk: send platform usage events to Uptake without getting in the host's way.

```python
from uptake_sdk import UptakeClient, api_call

uptake = UptakeClient("kafka-1:9092", source="api-gateway")          # or url=..., token=...
uptake.emit(api_call(capability="api-gateway", team="checkout", api="orders",
                     operation="POST /v1/orders", status_code=201, latency_ms=23.7))
```

Failure behaviour and every option: docs/sdk.md. The event contract is the worker's own
(`uptake_sdk._contract` is built from `pipeline/contract/`).
"""

from ._contract.decode import Limits
from ._contract.events import (
    ApiCallEvent,
    DeployEvent,
    Event,
    FeedbackEvent,
    IncidentEvent,
    ModelTrainingEvent,
)
from ._contract.reasons import Reason
from .client import DISABLED_ENV, Stats, UptakeClient
from .errors import DeliveryError, InvalidEvent, UptakeError
from .events import (
    MESSAGE_TARGET_BYTES,
    api_call,
    deploy,
    feedback,
    incident,
    model_training,
    pack_messages,
    rfc3339,
)
from .transport import HttpTransport, KafkaTransport, Transport, TransportError

__version__ = "0.1.0"

__all__ = [
    "DISABLED_ENV",
    "MESSAGE_TARGET_BYTES",
    "ApiCallEvent",
    "DeliveryError",
    "DeployEvent",
    "Event",
    "FeedbackEvent",
    "HttpTransport",
    "IncidentEvent",
    "InvalidEvent",
    "KafkaTransport",
    "Limits",
    "ModelTrainingEvent",
    "Reason",
    "Stats",
    "Transport",
    "TransportError",
    "UptakeClient",
    "UptakeError",
    "__version__",
    "api_call",
    "deploy",
    "feedback",
    "incident",
    "model_training",
    "pack_messages",
    "rfc3339",
]
