#![allow(dead_code)]

pub mod process;
