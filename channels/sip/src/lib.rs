//! SIP signalling: transports, trunks, registrar and the B2BUA call legs.
