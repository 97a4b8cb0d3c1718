"""crowdwatch: count people per zone on many cameras and alert the responsible center."""

__version__ = "0.1.0"
