# A real load balancer in front of several central nodes, for the central failover test.
#
# Source this file, then `start_haproxy` installs Debian's haproxy (once), checks that it
# runs, and exports:
#   SCL_TEST_HAPROXY   the haproxy executable (runtime/tests/central_failover.rs starts it
#                      with its own configuration, because the central ports are the test's)
# Nothing keeps running, so there is no stop_haproxy.

start_haproxy() {
    local bin
    bin=$(command -v haproxy || true)
    if [ -z "$bin" ] && [ -x /usr/sbin/haproxy ]; then bin=/usr/sbin/haproxy; fi
    if [ -z "$bin" ]; then
        echo "installing haproxy from Debian's packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null
        bin=/usr/sbin/haproxy
    fi
    if ! "$bin" -v >/dev/null 2>&1; then
        echo "start_haproxy: $bin does not run" >&2
        return 1
    fi
    export SCL_TEST_HAPROXY=$bin
}
