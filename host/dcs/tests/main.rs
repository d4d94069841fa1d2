//! keel-dcs integration tests: one binary (ripgrep style), one module per area.

mod memory;
mod model;
