"""The benchmark: `lbconsole bench`, its reports, the load generator and the
console measurements. Nothing in the product imports this package; the
generator shares only loop setup (`balancer.eventloop`) with what it measures."""
