"""pgmon: PostgreSQL monitoring on the processing host. Run: pyinfra inventory.py deploy.py"""

from pyinfra import host

from tasks import (
    configure_stack,
    install_docker,
    load_dashboard_9628,
    load_settings,
    read_host_state,
    render_stack,
    start_stack,
    verify_stack,
)

settings = load_settings(host)  # every setting and secret checked before the host is touched
stack = render_stack(settings, load_dashboard_9628(settings))
state = read_host_state(host, settings)  # one round trip; each step decides from it

install_docker(settings, state)
configure_stack(settings, state, stack)
start_stack(settings, state, stack)
verify_stack(settings)
