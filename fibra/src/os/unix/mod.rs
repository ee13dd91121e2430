//! Unix-specific parts of fibra, mirroring `std::os::unix`.

pub mod net;
