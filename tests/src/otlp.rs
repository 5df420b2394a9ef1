//! An OTLP/gRPC trace receiver (the collector's TraceService) on a loopback
//! port, keeping every span the sipbus processes export, for tests that
//! check what a trace is made of.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tonic::{Request, Response, Status};

/// One exported span, ids in lower-case hex (the parent's empty for a root).
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// The resource's `service.name`.
    pub service: String,
    pub attributes: BTreeMap<String, String>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut got = Vec::new();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .map(text)
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.push(Span {
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        name: s.name,
                        service: service.clone(),
                        attributes: s.attributes.iter().map(|kv| (kv.key.clone(), text(kv))).collect(),
                    });
                }
            }
        }
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend(got);
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Collector,
    _rt: tokio::runtime::Runtime,
}

impl OtlpReceiver {
    pub fn start() -> Result<OtlpReceiver> {
        let spans = Collector::default();
        let (addr, rt) =
            crate::serve_grpc(tonic::transport::Server::builder().add_service(TraceServiceServer::new(spans.clone())))?;
        Ok(OtlpReceiver { addr, spans, _rt: rt })
    }

    /// For `tracing.otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
