//! The sipbus gRPC contracts, generated from the `.proto` files beside this
//! crate, and the conversion between the contract's `SipMessage` and
//! `sip_message::Message`. Package names are versioned (`sipbus.<area>.v1`);
//! a breaking change gets a new version, never an edit in place.

pub mod convert;
pub mod trace;

/// `sipbus.admin.v1`: the operator's API (`sipbus ctl`).
#[allow(clippy::all, clippy::pedantic)]
pub mod admin {
    pub mod v1 {
        tonic::include_proto!("sipbus.admin.v1");
    }
}

/// `sipbus.edge.v1`: the edge API and the request handler every service
/// implements.
#[allow(clippy::all, clippy::pedantic)]
pub mod edge {
    pub mod v1 {
        tonic::include_proto!("sipbus.edge.v1");
    }
}

/// `sipbus.registrar.v1`: the location service.
#[allow(clippy::all, clippy::pedantic)]
pub mod registrar {
    pub mod v1 {
        tonic::include_proto!("sipbus.registrar.v1");
    }
}

/// `sipbus.sdp.v1`: offer/answer (sdp-svc) and the SDP handler extension
/// point.
#[allow(clippy::all, clippy::pedantic)]
pub mod sdp {
    pub mod v1 {
        tonic::include_proto!("sipbus.sdp.v1");
    }
}

/// `sipbus.session.v1`: the session supplement extension point.
#[allow(clippy::all, clippy::pedantic)]
pub mod session {
    pub mod v1 {
        // The generated code names `super::super::super::edge::v1` types.
        tonic::include_proto!("sipbus.session.v1");
    }
}

/// `sipbus.pubsub.v1`: the subscription handler extension point.
#[allow(clippy::all, clippy::pedantic)]
pub mod pubsub {
    pub mod v1 {
        tonic::include_proto!("sipbus.pubsub.v1");
    }
}

/// `sipbus.publish.v1`: the publication handler extension point and the
/// event state API.
#[allow(clippy::all, clippy::pedantic)]
pub mod publish {
    pub mod v1 {
        tonic::include_proto!("sipbus.publish.v1");
    }
}

/// `sipbus.extension.v1`: the extension registry (modules joining a point
/// at run time, with leases).
#[allow(clippy::all, clippy::pedantic)]
pub mod extension {
    pub mod v1 {
        tonic::include_proto!("sipbus.extension.v1");
    }
}
