"""What a public TRAINING_LOG.md may not hold, and the placeholder each thing becomes.

``sanitize(text, context)`` rewrites a run log line by line and counts what it
removed, by kind. Placeholders keep the meaning: ``/scratch/alice/ckpt/30000``
becomes ``<scratch>/ckpt/30000``, node ``n1`` becomes ``<node1>`` everywhere
(``n2`` is ``<node2>``), a job id ``<job-id>``. Secrets and emails are found by
``hpcwrap.redact.find_sensitive`` (the one list of secret patterns).

Job ids are removed by context only (``execution_id:``/``job_id:`` fields,
``job 123``, ``slurm-123.out``, ``afterany:123``, ``_<id>`` inside a file name
for an id the log records), never as bare numbers: a step or a loss that
happens to equal a job id stays. W&B links stay (the public project's URL
replaces a private one when the log records one); a warning says when a kept
link's entity is a local username.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hpcwrap.redact import EMAIL, find_sensitive

# Placeholders: one word in angle brackets each, so a second pass finds nothing.
SECRET_PLACEHOLDERS = {
    "W&B API key": "<wandb-api-key>",
    "Hugging Face token": "<hf-token>",
    "GitHub token": "<github-token>",
    "AWS access key id": "<aws-access-key-id>",
    "AWS secret": "<aws-secret>",
    "password": "<password>",
    "password in a URL": "<password>",
    "bearer token": "<token>",
    "Slack token": "<token>",
    "API key or token": "<secret>",
    "email": "<email>",
}
JOB_ID = "<job-id>"
USER = "<user>"
HOST = "<host>"
CLUSTER = "<cluster>"
WANDB_ID_FILE = "<wandb-id-file>"

# Summary labels (plural), in the order the summary prints them.
KIND_LABELS = {
    "job id": "job ids",
    "node name": "node names",
    "home path": "home paths",
    "scratch path": "scratch paths",
    "project path": "project paths",
    "work path": "work paths",
    "tmp path": "tmp paths",
    "repo path": "repository paths",
    "other path": "other absolute paths",
    "username": "usernames",
    "hostname": "hostnames",
    "cluster name": "cluster names",
    "wandb_id.txt": "wandb_id.txt references",
    "email": "emails",
    "password in a URL": "passwords in URLs",
    "API key or token": "API keys or tokens",
}
# Cluster names that are also words ("ClusterName=cluster" is Slurm's example): only the
# ``cluster:`` field's value is replaced, not the word elsewhere.
_WORDY_CLUSTERS = frozenset({"cluster", "linux", "default", "slurm", "main", "hpc", "local"})
_CLUSTER_FIELD = re.compile(r"^(\s*[-*]\s+cluster:\s*`?)(?!<)([\w.-]+)", re.IGNORECASE)

_WANDB_URL = re.compile(r"https?://(?:[\w-]+\.)*wandb\.(?:ai|me)(?:/[^\s`'\"<>()\[\]]*)?")
_WANDB_ID = re.compile(
    r"`?[^\s`'\"()<>]*wandb_id\.txt`?(?:(\s*(?::|=|->|→)\s*)`?[\w-]+`?)?", re.IGNORECASE
)
_SLURM_OUT = re.compile(r"\bslurm-\d+(?:_\d+)?(?=\.(?:out|err|log)\b)")
_JOB_FIELD = re.compile(
    r"(?i)\b(execution_id|job_?id|job[ -]id|jobid|slurm_(?:array_)?job_id|follow_up_job"
    r"|array_job_id)(`?\s*[:=]\s*`?)(\d+(?:_\d+)?(?:\[[\d,%-]+\])?)(?![\w.])"
)
_JOB_WORD = re.compile(
    r"(?i)\b(job|scancel|sacct\s+-j|seff|scontrol\s+(?:show|requeue|release|hold)\s+job)"
    r"(\s+#?)(\d+(?:_\d+)?)(?![\w.])"
)
_DEPENDENCY = re.compile(r"(?i)\b(after(?:any|ok|notok|corr|burstbuffer)?)((?::\d+(?:_\d+)?)+)")
_BY_UID = re.compile(r"\b(CANCELLED by )(\d+)\b")
_NID = re.compile(r"\bnid\d{4,}\b")
_LOGIN_NODE = re.compile(r"\blogin\d+\b")
_USER_AT_HOST = re.compile(r"(?<![\w.+-])([\w.-]+)@([A-Za-z][\w-]*)(?![\w.-])")
# An absolute path: "/" not after a word, a URL or a placeholder.
_ABS_PATH = re.compile(r"(?<![\w:/.~<>$}\\-])/[\w.+@%=,-]+(?:/[\w.+@%=,-]*)*")
_FIELD = re.compile(r"^\s*(?:[-*]\s+)?`?([\w &/()-]+?)`?\s*[:=]\s*(.+?)\s*$")
_PLACEHOLDER = re.compile(r"^<[\w -]+>$")
_HOME = re.compile(r"^/(?:home|Users|u|usr/home|home\d*)/([^/]+)")
_SCRATCH = re.compile(r"^(?:/[^/]+)*?/[^/]*scratch[^/]*(?=/|$)", re.IGNORECASE)
_PROJECT = re.compile(r"^(?:/[^/]+)*?/(?:projects?|proj|prj|projappl)(?=/|$)", re.IGNORECASE)
_WORK = re.compile(r"^(?:/[^/]+)*?/work\d*(?=/|$)", re.IGNORECASE)
_TMP = re.compile(r"^/(?:tmp|var/tmp|dev/shm)(?=/|$)")
_SENTINEL = re.compile("\x00(\\d+)\x00")


@dataclass
class Context:
    """What the export knows besides the text: the run's recorded facts and this machine."""

    job_ids: set[str] = field(default_factory=set)
    nodes: list[str] = field(default_factory=list)  # in order: n1 -> <node1>
    users: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    clusters: set[str] = field(default_factory=set)
    # (absolute folder, placeholder), e.g. ("/scratch/alice/proj", "<repo>"); longest wins
    roots: list[tuple[str, str]] = field(default_factory=list)
    public_wandb: list[str] = field(default_factory=list)

    def add_node(self, name: str) -> None:
        if name and name not in self.nodes and not _PLACEHOLDER.match(name):
            self.nodes.append(name)


@dataclass
class Summary:
    """What an export removed (kind -> count), the W&B links it kept, and its warnings."""

    removed: Counter[str] = field(default_factory=Counter)
    kept_links: list[str] = field(default_factory=list)
    public_links_used: int = 0
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.removed:
            out.append("removed:")
            order = list(KIND_LABELS)
            for kind in sorted(self.removed, key=lambda k: (k not in order, _index(order, k), k)):
                out.append(f"  {self.removed[kind]:>4} {plural(kind)}")
        else:
            out.append("removed: nothing")
        if self.kept_links:
            line = f"kept: {len(self.kept_links)} W&B link(s)"
            if self.public_links_used:
                line += f" ({self.public_links_used} private link(s) replaced by the public one)"
            out.append(line)
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _index(order: list[str], kind: str) -> int:
    return order.index(kind) if kind in order else len(order)


def plural(kind: str) -> str:
    if kind in KIND_LABELS:
        return KIND_LABELS[kind]
    return kind + "s" if not kind.endswith("s") else kind


# ---------------------------------------------------------------- learning from the text


# Mailboxes that name a role, not a person: kept wherever else the word appears.
_ROLE_MAILBOXES = frozenset(
    {"admin", "info", "support", "noreply", "no-reply", "help", "contact", "team", "root"}
)


def learn(text: str, ctx: Context) -> Context:
    """``ctx`` plus what the text itself says: ids, nodes, users, clusters, hosts in its fields."""
    out = Context(
        set(ctx.job_ids),
        list(ctx.nodes),
        set(ctx.users),
        set(ctx.hosts),
        set(ctx.clusters),
        list(ctx.roots),
        list(ctx.public_wandb),
    )
    for m in _JOB_FIELD.finditer(text):
        out.job_ids.add(m.group(3).split("[")[0])
    for m in _JOB_WORD.finditer(text):
        out.job_ids.add(m.group(3))
    for m in _NID.finditer(text):
        out.add_node(m.group(0))
    for m in re.finditer(r"(?<![\w:/.~<>$}-])/(?:home|Users)/([\w.-]+)", text):
        out.users.add(m.group(1))
        # sites name homes u.<user> or <group>.<user>: the user is seen once, gone everywhere
        head, dot, tail = m.group(1).rpartition(".")
        if dot and head and len(tail) >= 3:
            out.users.add(tail)
    for m in EMAIL.finditer(text):  # an email's user part is a user name too
        local = m.group(0).split("@", 1)[0]
        if len(local) >= 3 and local.lower() not in _ROLE_MAILBOXES:
            out.users.add(local)
    for line in text.splitlines():
        fm = _FIELD.match(line)
        if not fm:
            continue
        label = fm.group(1).strip().lower().replace(" ", "_")
        value = fm.group(2).strip().strip("`")
        if _PLACEHOLDER.match(value) or value.lower() in ("n/a", "none", "none seen", ""):
            continue
        if label in ("node", "nodes", "nodelist", "node_list", "slurm_job_nodelist"):
            for name in split_nodes(value):
                out.add_node(name)
        elif label in ("cluster", "slurm_cluster_name") and value.lower() not in _WORDY_CLUSTERS:
            out.clusters.add(value.split()[0])
        elif label in ("host", "hostname", "submit_host", "login_node"):
            out.hosts.add(value.split()[0])
        elif label in ("user", "username", "slurm_job_user", "owner"):
            out.users.add(value.split()[0])
        elif "public" in label:
            out.public_wandb += [u.rstrip(".,;:") for u in _WANDB_URL.findall(value)]
    out.users = {u for u in out.users if len(u) >= 2 and not u.isdigit() and u != "root"}
    for m in _USER_AT_HOST.finditer(text):  # ``alice@login03``: a prompt, not an email
        if m.group(1) in out.users:
            out.hosts.add(m.group(2))
    out.hosts |= set(_LOGIN_NODE.findall(text))
    out.hosts = {h for h in out.hosts if len(h) >= 2 and h != "localhost"}
    return out


def split_nodes(value: str) -> list[str]:
    """``n[1-2],gpu7`` -> n1, n2, gpu7 (simple Slurm hostlists)."""
    names: list[str] = []
    for part in re.findall(r"[\w.-]+(?:\[[\d,-]+\])?", value):
        m = re.fullmatch(r"([\w.-]+)\[([\d,-]+)\]", part)
        if not m:
            names.append(part)
            continue
        for piece in m.group(2).split(","):
            lo, _, hi = piece.partition("-")
            if not lo.isdigit():
                continue
            width = len(lo)
            end = int(hi) if hi.isdigit() else int(lo)
            names += [
                f"{m.group(1)}{i:0{width}d}" for i in range(int(lo), min(end, int(lo) + 512) + 1)
            ]
    return names


# ---------------------------------------------------------------- the rules


def _words(names: Iterable[str]) -> re.Pattern[str] | None:
    names = sorted({n for n in names if n}, key=len, reverse=True)
    if not names:
        return None
    alt = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?<![\w<.-])(?:{alt})(?![\w>-])")


@dataclass
class _Rules:
    ctx: Context
    node_names: dict[str, str]
    nodes: re.Pattern[str] | None
    users: re.Pattern[str] | None
    hosts: re.Pattern[str] | None
    clusters: re.Pattern[str] | None
    id_in_names: re.Pattern[str] | None
    hostlists: re.Pattern[str] | None


def _rules(ctx: Context) -> _Rules:
    ids = sorted((i for i in ctx.job_ids if i), key=len, reverse=True)
    id_in_names = None
    if ids:
        alt = "|".join(re.escape(i) for i in ids)
        # ``resolved_1234_config.yaml``: the id between ``_`` and ``_``/``.`` in a name
        id_in_names = re.compile(rf"(?<=[\w.-]_)(?:{alt})(?=[_.][\w.-])")
    prefixes = {m.group(0) for n in ctx.nodes if (m := re.match(r"[A-Za-z][A-Za-z-]*", n))}
    hostlists = None
    if prefixes:  # ``n[1-2]``: a Slurm hostlist of known nodes
        alt = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
        hostlists = re.compile(rf"(?<![\w<.-])(?:{alt})\[[\d,-]+\]")
    return _Rules(
        ctx,
        {n: f"<node{i}>" for i, n in enumerate(ctx.nodes, start=1)},
        _words(ctx.nodes),
        _words(ctx.users),
        _words(ctx.hosts - set(ctx.nodes)),
        _words(ctx.clusters),
        id_in_names,
        hostlists,
    )


def _path(path: str, rules: _Rules, removed: Counter[str]) -> str:
    """One absolute path with its site-specific head replaced by a placeholder."""
    users = rules.ctx.users
    for root, placeholder in sorted(rules.ctx.roots, key=lambda r: len(r[0]), reverse=True):
        root = root.rstrip("/")
        if root and (path == root or path.startswith(root + "/")):
            removed[placeholder.strip("<>") + " path"] += 1
            return placeholder + _drop_users(path[len(root) :], users)
    if path == "/root" or path.startswith("/root/"):
        removed["home path"] += 1
        return "<home>" + _drop_users(path[5:], users)
    for rx, name in ((_HOME, "home"), (_SCRATCH, "scratch"), (_PROJECT, "project")):
        m = rx.match(path)
        if m:
            removed[f"{name} path"] += 1
            return f"<{name}>" + _drop_users(path[m.end() :], users)
    for rx, name in ((_WORK, "work"), (_TMP, "tmp")):
        m = rx.match(path)
        if m:
            removed[f"{name} path"] += 1
            return f"<{name}>" + _drop_users(path[m.end() :], users)
    parts = [p for p in path.split("/") if p]
    removed["other path"] += 1
    tail = "/".join(p for p in parts[-2:] if p not in users) if len(parts) > 1 else ""
    return "<path>" + (f"/{tail}" if tail else "")


def _drop_users(rest: str, users: set[str]) -> str:
    return "/".join(p for p in rest.split("/") if p not in users) if rest else rest


def _count_sub(
    rx: re.Pattern[str] | None,
    repl: str | Callable[[re.Match[str]], str],
    text: str,
    kind: str,
    removed: Counter[str],
) -> str:
    if rx is None:
        return text
    new, n = rx.subn(repl, text)
    if n:
        removed[kind] += n
    return new


def _line(line: str, rules: _Rules, summary: Summary) -> str:
    removed = summary.removed
    links: list[str] = []

    def keep_link(m: re.Match[str]) -> str:
        url = m.group(0)
        trail = ""
        while url and url[-1] in ".,;:":
            url, trail = url[:-1], url[-1] + trail
        links.append(_public_link(url, rules.ctx, summary))
        return f"\x00{len(links) - 1}\x00{trail}"

    text = _WANDB_URL.sub(keep_link, line)
    for f in reversed(find_sensitive(text)):
        removed[f.kind] += 1
        text = text[: f.start] + SECRET_PLACEHOLDERS.get(f.kind, "<secret>") + text[f.end :]
    text = _count_sub(_WANDB_ID, WANDB_ID_FILE, text, "wandb_id.txt", removed)
    # job ids, by context only
    text = _count_sub(_SLURM_OUT, f"slurm-{JOB_ID}", text, "job id", removed)
    text = _count_sub(_JOB_FIELD, rf"\g<1>\g<2>{JOB_ID}", text, "job id", removed)
    text = _count_sub(_JOB_WORD, rf"\g<1>\g<2>{JOB_ID}", text, "job id", removed)
    text = _count_sub(_DEPENDENCY, rf"\g<1>:{JOB_ID}", text, "job id", removed)
    text = _count_sub(rules.id_in_names, JOB_ID, text, "job id", removed)
    text = _count_sub(_BY_UID, rf"\g<1>{USER}", text, "username", removed)
    # paths, then the names left outside them
    text = _ABS_PATH.sub(lambda m: _path(m.group(0), rules, removed), text)
    text = _count_sub(rules.hostlists, "<nodes>", text, "node name", removed)
    if rules.nodes is not None:
        text = _count_sub(
            rules.nodes, lambda m: rules.node_names[m.group(0)], text, "node name", removed
        )
    text = _count_sub(_CLUSTER_FIELD, rf"\g<1>{CLUSTER}", text, "cluster name", removed)
    text = _count_sub(rules.clusters, CLUSTER, text, "cluster name", removed)
    text = _count_sub(rules.hosts, HOST, text, "hostname", removed)
    text = _count_sub(rules.users, USER, text, "username", removed)
    return _SENTINEL.sub(lambda m: links[int(m.group(1))], text)


def _public_link(url: str, ctx: Context, summary: Summary) -> str:
    """The link to keep for ``url``: the public project's when the log records one."""
    chosen = url
    public = [u for u in ctx.public_wandb if u]
    if public and url not in public:
        run_id = url.rstrip("/").rsplit("/", 1)[-1]
        same = [u for u in public if u.rstrip("/").rsplit("/", 1)[-1] == run_id]
        if same or len(set(public)) == 1:
            chosen = (same or public)[0]
            summary.public_links_used += 1
    summary.kept_links.append(chosen)
    entity = _entity(chosen)
    if entity and entity in ctx.users:
        warning = (
            f"kept W&B link {chosen} names the entity '{entity}', which is a local username "
            "(it names a person): link a team or public project instead"
        )
        if warning not in summary.warnings:
            summary.warnings.append(warning)
    return chosen


def _entity(url: str) -> str | None:
    m = re.match(r"https?://(?:[\w-]+\.)*wandb\.(?:ai|me)/([^/\s]+)/", url)
    return m.group(1) if m else None


def sanitize(text: str, ctx: Context | None = None) -> tuple[str, Summary]:
    """``text`` without what a public log may not hold, and what was removed, by kind."""
    rules = _rules(learn(text, ctx or Context()))
    summary = Summary()
    out = "\n".join(_line(line, rules, summary) for line in text.split("\n"))
    return out, summary


@dataclass(frozen=True)
class Leftover:
    """A line of a checked file that still holds something sensitive."""

    line: int
    kinds: tuple[str, ...]


def check(text: str, ctx: Context | None = None) -> list[Leftover]:
    """Every line that ``sanitize`` would change, with the kinds it would remove."""
    rules = _rules(learn(text, ctx or Context()))
    found = []
    for n, line in enumerate(text.split("\n"), start=1):
        summary = Summary()
        _line(line, rules, summary)
        if summary.removed:
            found.append(Leftover(n, tuple(sorted(summary.removed))))
    return found


__all__ = [
    "KIND_LABELS",
    "SECRET_PLACEHOLDERS",
    "Context",
    "Leftover",
    "Summary",
    "check",
    "learn",
    "plural",
    "sanitize",
    "split_nodes",
]
