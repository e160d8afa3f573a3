"""The threat model per isolation tier, appended to docs/security.md by tools/hostile_report.py.

Hand-written: what the code promises. The tables above it in docs/security.md are what a real run
of the hostile suite observed; each promise here has an attack there (named in brackets).
"""

THREAT_MODEL = """## Threat model

The provider is hostile and has read the harness's code. The harness runs as root (CI and the
documented set-up); a harness that is not root is covered at the end.

### On every tier

Prevented:

- **Running as root.** Every sandboxed process (the canary, the provider, the identity probe of an
  unadmitted binary, the harness's own verification) runs as a *sandbox uid* allocated for the run
  from `CTO_HARNESS_SANDBOX_UIDS` (default 61100-61163, locked per run, no passwd entry), with no
  supplementary group, no capability and no-new-privs. The files it may write are handed to it
  before the launch and taken back (lchown, no link followed) before the harness reads them. A run
  that cannot drop privileges is blocked, never run as root: `sandbox_user_unavailable` when no
  uid is free, `isolation_breach` when the canary's `id -u` is not the allocated uid.
  [read_root_only, read_signing_key]
- **Reaching the harness.** The signing key is root's (0600 in a 0700 folder) and never shared
  with the sandbox uid; the harness is non-dumpable, runs under another uid and outside the
  sandbox's PID namespace (a fresh /proc inside shows only the sandbox), so its
  `/proc/<pid>/environ`, maps and auxv cannot be read and it cannot be signalled or stopped (the
  time limit always holds). [read_harness_environ, signal_harness]
- **The network.** A network namespace with loopback only. The one allowed endpoint (Case and pi:
  the admitted model base URL, the endpoint the harness itself started on the host's loopback for a
  scripted, replayed or recorded run, or the model provider's public API) is reached through the
  harness's proxy (a Unix socket from outside the namespace, a forwarder on `127.0.0.1:<port>`
  inside), and every connection is logged to `backend/network.jsonl` (phase, host, port, bytes each
  way, start, end, result). Other hosts are unreachable (no route), `git://` and every service on
  the host's loopback are another namespace's; `/tmp`, `/run`, `/dev/shm` are private, so host
  services on Unix sockets there are out of sight, and abstract Unix sockets belong to the
  namespace. The canary checks it before every start: the host's loopback and its other addresses
  unreachable, the endpoint reachable. [git_push_loopback, unix_socket_escape]
- **Outliving the run or the harness.** A PID namespace: when the provider's main process exits,
  PID 1 (bwrap's, or the launcher's on landlock/none) kills and reaps what is left and the
  namespace ends. A chain of parent-death signals ties it to the harness (harness, launcher, PID 1,
  namespace; bwrap: `--die-with-parent`): a SIGKILLed harness leaves nothing running. After every
  launch the sandbox uid is swept: a helper with that uid calls `kill(-1, SIGKILL)` (atomic with
  respect to fork in the kernel), then /proc must show no process of that uid; only then is
  `tree_clean` true and the files taken back, else the run is blocked `containment_failed`.
  [fork_chain, harness_killed, daemon, race_after_exit]
- **The bundle, other runs, target repositories, the harness's home**: owned by root and not the
  sandbox uid's to write; hidden as well on bwrap and landlock. [write_outside, tamper_bundle]
  The take-back changes only what the sandbox uid owns: a hard link to someone else's file
  (possible on `none`) is listed by the diff and left as it is.
- **Admission**: `ca --help` of a binary that is not admitted yet runs confined like a provider
  (sandbox uid, no network, private HOME, harness state hidden, time limit).

Detected (the run does not pass, the evidence names it):

- A process left running when the provider exits (landlock, none: listed by PID 1, then killed;
  `no_processes_left_running` fails). On bwrap it dies with the namespace without being listed.
- A Case workspace whose `.git` leads elsewhere (a symlink, a `gitdir:` file, a worktree
  `commondir`, borrowed `alternates`, a linked or hard-linked `config`, includes, `core.worktree`):
  reported as `git_dir_replaced` and never read; remote URLs in the report lose their credentials.
- Changes outside the allowed paths, rewritten tests, claims without work (see the table).

Out of scope, or known gaps:

- The kernel: all tiers share it; the only seccomp filter is the launcher's, which refuses the
  kernel keyring (add_key, request_key, keyctl: keys belong to a uid, not to a namespace). A
  kernel exploit escapes.
- The allowed endpoint is a channel: the provider may send its model anything it can read; the
  log has bytes and times, not content (TLS in CONNECT mode is end to end).
- CPU and memory are not limited (SysV shared memory and memfd are memory in that sense).
  Limited: tasks (RLIMIT_NPROC, 2048 per sandbox uid, so a fork bomb stops there; a harness
  that is not root sets none), disk (RLIMIT_FSIZE and the workspace limit, watched while the
  provider and the verification run; the scratch tmpfs, bounded by the same limit) and logs
  (32 MiB).
- Building a provider from source (`bun install`, `bun run build:binary`) runs the source's
  scripts confined like the identity probe (a sandbox uid, the harness's home and HOME hidden,
  only the build folder writable), but with the host's network: they can reach the package
  registry and anything else the machine can. A build never steers what the harness writes or
  reads: step logs live outside the build folder, the artifact is never read through a link,
  and a binary past 1 GiB is refused before it is copied. npm admission (pi) runs `npm`
  unconfined.
- A case is the operator's own code: the harness collects the pristine fixture's test ids by
  running its verification command unconfined, as the harness's user, in the case's `repo/`
  (which no provider sees or changes). Take a case from elsewhere as you would any program.
- An https endpoint reached in forward mode is not possible (https always uses CONNECT); an http
  gateway on another host sees `Host: 127.0.0.1:<port>`.

### bwrap

Adds: the root file system read-only; HOME, `$CTO_HARNESS_HOME` (keys, registry, bundles), the
runs directory, the fixture cases and every target repository replaced by empty tmpfs; only the
workspace and the provider's private dirs writable. Reads of a target are prevented, not detected.

### landlock

Adds, through the launcher's own namespaces and mounts (as bwrap's): Landlock rules allowing reads
of the system directories and the interpreter only, writes to the workspace and the provider's
private dirs only, TCP only on the forwarder's port (ABI 4+), signals and abstract sockets scoped
to the sandbox (ABI 6+).

### none

The launcher's namespaces and the sandbox uid, no file-system rules: the provider may read every
file the sandbox uid may read (world-readable files outside `/tmp`, `/run` and folders it cannot
traverse, a target repository among them) and write every world-writable one. Writes to watched
places are detected (`outside_write_detected`, `bundle_tampered`); a read is not. The hostile
worlds live in `/var/tmp` for the new attacks and in `/tmp` for the older ones; a target under
`/tmp` is out of reach on every tier only because `/tmp` is private.

### Where the machine cannot

- No namespace can be made (the launcher's probe fails; bwrap unusable): the network is shared,
  `isolation.network` says `shared`, `isolation.warnings` says why and report.md shows it; there
  is no PID namespace, so containment rests on the uid sweep. If the interpreter or the run
  directory sits behind a folder the sandbox uid cannot traverse, the run is blocked
  `isolation_unavailable` (no mount namespace can bridge it).
- A harness that is not root: sandboxed processes keep its uid inside a user namespace
  (`isolation.user_source: harness`); there is no uid sweep (PID namespace only) and, on every
  tier, `none` included, HOME, the harness's home and runs directory, the fixture cases and the
  target repositories are hidden (the provider has the operator's uid: a write there, to
  `~/.bashrc` say, would run later outside any sandbox); elsewhere on `none` it may write what the
  operator may; without user namespaces the network is shared.

### Showing that each guard holds

`python3 tools/guard_check.py` removes each confinement guard in a copy of the repository (a text
patch asserted to apply) and runs the tests that must then fail; a guard whose tests still pass is
reported as not load-bearing. With a guard gone, the tests' hostile processes can escape every
containment of the harness, so each test run is the child of PID 1 of a PID namespace of its own
(`unshare --pid --fork --kill-child --mount-proc`): whatever is left dies with it, and without
`unshare` nothing runs. Against a fork-and-exit chain three layers hold on landlock and none: the
PID namespace, the uid sweep and the harness's own scan-and-kill loop as a subreaper (with a
`wait()` that must report no child before the tree is called clean). Each is enough alone in
practice (the loop has caught every chain of Python or sh processes tried here), so the check
removes them together; the uid sweep alone is shown by a unit test, and the `wait()` proof closes
a race no test chain wins reliably (its unit test holds with and without it).

The test suite holds itself to the same rule (`tests/process_guard.py`, a pytest plugin every
session loads): pytest becomes a child subreaper first, so every orphan of every test (a daemon,
each generation of a fork-and-exit chain) is re-parented to it and reaped, never left to an init
that may not reap. After each test, anything it left running below pytest is killed with its tree
and the test fails naming it; at the end of the session everything still below pytest, every
process of a sandbox uid that no harness holds and every process carrying the session's marker is
killed, and the session fails naming them. The fork-and-exit chains the tests start end by
themselves when the test process is gone (each generation checks its pid) and after a minute at
most.
"""
