"""A fleet simulator built on the worker SDK: many workers, random outcomes, latency, abandoned leases."""

from workhub.sim.fleet import FleetConfig, FleetSimulator, FleetStats, check_loopback

__all__ = ["FleetConfig", "FleetSimulator", "FleetStats", "check_loopback"]
