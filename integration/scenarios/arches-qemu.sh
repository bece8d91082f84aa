#!/usr/bin/env bash
# The arches scenario for the images that run under qemu-user (armv7,
# armv6, ppc64le, s390x): the same checks as scenarios/arches.sh, which
# run-matrix.sh runs once per image tag of DOCKERFUSE_TEST_QEMU_ARCHES.
exec bash "$(dirname "${BASH_SOURCE[0]}")/arches.sh" "$@"
