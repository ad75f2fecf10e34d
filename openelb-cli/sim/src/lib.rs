//! The simulator behind `openelb-cli allocate` and `simulate`: the cluster as the controller, kubelet and the
//! endpoints controller leave it ([`World`]), every node's real VRRP agent on an in-memory L2 segment with a
//! client ([`DataPlane`]), a scenario's timeline of events ([`Scenario`]) and the run that plays it in virtual
//! time ([`run()`]) into a [`Report`].

pub mod data_plane;
pub mod loaded;
pub mod report;
pub mod run;
pub mod scenario;
pub mod timing;
pub mod unknown_node;
pub mod world;

pub use data_plane::{DataPlane, DataPlaneError};
pub use loaded::Loaded;
pub use report::Report;
pub use run::{RunError, run};
pub use scenario::{Scenario, ScenarioError};
pub use timing::{AdvertIntervalError, Timing};
pub use world::{World, WorldError};
