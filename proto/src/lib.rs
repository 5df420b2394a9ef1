//! The sipbus gRPC contracts, generated from the `.proto` files beside this
//! crate. Package names are versioned (`sipbus.<area>.v1`); a breaking
//! change gets a new version, never an edit in place.

#![allow(clippy::all, clippy::pedantic)]

/// `sipbus.edge.v1`: the edge API and the request handler every service
/// implements.
pub mod edge {
    pub mod v1 {
        tonic::include_proto!("sipbus.edge.v1");
    }
}

/// `sipbus.registrar.v1`: the location service.
pub mod registrar {
    pub mod v1 {
        tonic::include_proto!("sipbus.registrar.v1");
    }
}
