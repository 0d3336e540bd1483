"""TCP forwarding across the lab: an HTTP server behind one middlebox, `i6p expose` next to
it with a rendezvous node, `i6p forward` behind the other middlebox (given the contact
`expose` printed, which names the rendezvous node, or a bare contact and `--via`), and
`curl` there fetching a page through the tunnel (what a user runs to reach a service behind
a firewall)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from i6p import Contact

from .lab import Lab
from .test_rendezvous_cli import cli, first_line, start


@pytest.mark.parametrize(("number", "how"), [(2, "contact"), (7, "contact"), (7, "--via")])
def test_curl_fetches_a_page_through_the_tunnel_between_firewalled_hosts(
    number: int, how: str, tmp_path: Path
) -> None:
    page = os.urandom(300 << 10).hex().encode()  # 600 KiB: many packets each way
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.txt").write_bytes(page)
    procs: list[subprocess.Popen[str]] = []
    with Lab(number) as lab:
        try:
            rendezvous = start(cli(lab, "c", tmp_path / "c", "rendezvous", "--relay", "--json"))
            procs.append(rendezvous)
            rdv = str(first_line(rendezvous)["contact"])
            http = start(
                ["ip", "netns", "exec", lab.ns("a"), sys.executable, "-m", "http.server",
                 "8080", "--bind", "::1", "--directory", str(site)]
            )  # fmt: skip
            procs.append(http)
            exposer = start(
                cli(lab, "a", tmp_path / "a", "expose", "8080", "--host", "::1",
                    "--service", "http", "--rendezvous", rdv, "--json")
            )  # fmt: skip
            procs.append(exposer)
            contact = Contact.parse(str(first_line(exposer)["contact"]))
            assert contact.via == [Contact.parse(rdv)]
            if how == "contact":
                args = [str(contact)]
            else:
                args = [str(Contact(contact.peer_id, contact.addrs)), "--via", rdv]
            forwarder = start(
                cli(lab, "b", tmp_path / "b", "forward", *args, "8081", "--service", "http",
                    "--json")
            )  # fmt: skip
            procs.append(forwarder)
            info = first_line(forwarder)
            # Topology 2 (stateful firewalls) is punched; 7 (NAT44 on both sides) relayed.
            assert info["port"] == 8081 and info["route"] == {2: "punched", 7: "relayed"}[number]
            got = subprocess.run(
                ["ip", "netns", "exec", lab.ns("b"), "curl", "--silent", "--show-error",
                 "--fail", "--max-time", "60", "--retry", "3", "--retry-connrefused",
                 "http://[::1]:8081/page.txt"],
                capture_output=True, timeout=90,
            )  # fmt: skip
            assert got.returncode == 0, got.stderr
            assert got.stdout == page
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
