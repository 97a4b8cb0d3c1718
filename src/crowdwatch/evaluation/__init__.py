"""Measuring counting accuracy on labeled pictures (head points), e.g. to validate a camera's
counts or fit its density calibration. Reads files; used by benchmarks and tests, never by the
running pipeline."""
