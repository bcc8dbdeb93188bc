"""One package per external system; :mod:`adapters.base` holds the contract they implement."""
