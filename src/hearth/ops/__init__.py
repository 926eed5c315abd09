"""Operations: liveness, readiness and the Prometheus metrics of this process."""
