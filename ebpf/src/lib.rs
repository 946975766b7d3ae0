#![no_std]
// This file exists so the crate has a library target (aya-template convention); the program is
// the `ipwarden` binary in main.rs.
