pub mod alertmanager;
pub mod config;
pub mod notify;
pub mod routing;
