"""What each API operation does, for the OpenAPI document (web/api/openapi.py).

One table beside the permission table (web/permissions.py), keyed the same way: a route whose
function has a docstring needs no row (the docstring is its description); a row here wins over
nothing but is replaced by neither. tests/integration/test_openapi_document.py fails on an
operation that has no description at all.
"""

from __future__ import annotations

from orchestra.web.permissions import API

P = f"{API}/projects/{{project}}"

OPERATIONS: dict[tuple[str, str], str] = {
    ("GET", f"{API}/health"): "Whether the server is up and reaches its database. Anonymous.",
    ("POST", f"{API}/apply"): (
        "Create or update the projects, jobs, schedules, pipelines and notifications of a "
        "document (the YAML of `orchestra apply`, as JSON). Idempotent: applying the same "
        "document again changes nothing. The answer lists what was created or updated."
    ),
    ("POST", f"{API}/me/login"): (
        "Log in with a user's password: the answer carries a token to use as `Authorization: "
        "Bearer TOKEN`, and its expiration date. Refused (401) for a wrong password or a "
        "disabled user, and throttled after repeated failures (429)."
    ),
    ("GET", f"{API}/me"): "The caller: their user, roles and groups.",
    ("POST", f"{API}/me/logout"): "Revoke the token used for this request.",
    ("POST", f"{API}/me/password"): (
        "Change the caller's own password (`old_password` must match). Other login sessions "
        "end; with `revoke_tokens`, the caller's API tokens are revoked too."
    ),
    ("GET", f"{API}/me/tokens"): "The caller's tokens (never their secrets).",
    ("POST", f"{API}/me/tokens"): (
        "Create a token for the caller. The answer carries its `secret`, once: it is never "
        "shown again. A token never has more rights than its user."
    ),
    ("DELETE", f"{API}/me/tokens/{{token}}"): "Revoke one of the caller's tokens.",
    ("GET", f"{API}/users"): "Every user (auditors and administrators).",
    ("POST", f"{API}/users"): "Create a user, with roles and optionally a password.",
    ("GET", f"{API}/users/{{user}}"): "One user.",
    ("PATCH", f"{API}/users/{{user}}"): (
        "Change a user's display name, roles, groups, password or `is_enabled` (a disabled "
        "user authenticates as anonymous)."
    ),
    ("DELETE", f"{API}/users/{{user}}"): "Delete a user and their tokens.",
    ("GET", f"{API}/users/{{user}}/tokens"): "A user's tokens (never their secrets).",
    ("POST", f"{API}/users/{{user}}/tokens"): (
        "Create a token for a user (an administrator's bootstrap of a worker's account, for "
        "example); its `secret` is in the answer, once."
    ),
    ("DELETE", f"{API}/users/{{user}}/tokens/{{token}}"): "Revoke a user's token.",
    ("POST", f"{API}/projects"): "Create a project (409 if the identifier is taken).",
    ("GET", P): "One project, with the space its runs' artifacts take.",
    ("PUT", P): "Create or replace a project.",
    ("PATCH", P): "Change some fields of a project (a disabled project's runs stay pending).",
    ("DELETE", P): "Delete a project with its jobs, schedules, pipelines and runs.",
    ("GET", f"{P}/jobs"): "The project's jobs.",
    ("POST", f"{P}/jobs"): "Create a job in the project.",
    ("GET", f"{P}/jobs/{{job}}"): "One job (secret parameter defaults shown as `***`).",
    ("PUT", f"{P}/jobs/{{job}}"): (
        "Create or replace a job. Runs already triggered keep their own copy of the steps."
    ),
    ("PATCH", f"{P}/jobs/{{job}}"): "Change some fields of a job.",
    ("DELETE", f"{P}/jobs/{{job}}"): ("Delete a job; refused (409) while a pipeline names it."),
    ("POST", f"{P}/jobs/{{job}}/trigger"): (
        "Trigger a run of the job: 201 with a `pending` run holding its own copy of the steps. "
        "Undeclared parameters, and declared ones without a default that are not given, are "
        "refused (422). `warning` says when no registered worker could ever take the run."
    ),
    ("GET", f"{P}/runs"): (
        "The project's runs, newest first, filtered by `job`, `status` and `worker`."
    ),
    ("GET", f"{P}/runs/{{run}}"): (
        "One run with its steps; a pending run says why it waits (`waiting_reason`)."
    ),
    ("POST", f"{P}/runs/{{run}}/cancel"): (
        "Cancel a pending run: it becomes `cancelled` and never starts (409 once it started)."
    ),
    ("POST", f"{P}/runs/{{run}}/abort"): (
        "Abort a running run: its step's process group gets SIGTERM, then SIGKILL after a "
        "grace period, and the run ends `aborted` (409 if it is pending or final)."
    ),
    ("POST", f"{P}/runs/{{run}}/force"): (
        "Set a run's final status by hand, with a reason (an operator's way out of a run "
        "whose worker will never report again). Recorded as `forced_by`."
    ),
    ("GET", f"{P}/schedules"): "The project's schedules, with their next due times.",
    ("POST", f"{P}/schedules"): "Create a schedule (a job or a pipeline, and a cron expression).",
    ("GET", f"{P}/schedules/{{schedule}}"): "One schedule, with its next due times.",
    ("PUT", f"{P}/schedules/{{schedule}}"): "Create or replace a schedule.",
    ("PATCH", f"{P}/schedules/{{schedule}}"): "Change some fields of a schedule.",
    ("DELETE", f"{P}/schedules/{{schedule}}"): "Delete a schedule (its past runs stay).",
    ("GET", f"{API}/workers"): "Every worker registered, connected or not.",
    ("GET", f"{API}/workers/{{worker}}"): "One worker.",
    ("PATCH", f"{API}/workers/{{worker}}"): (
        "Enable, disable or approve a worker, or rename it (`display_name`). A disabled "
        "worker gets no new runs."
    ),
    ("DELETE", f"{API}/workers/{{worker}}"): "Forget a worker that is not connected.",
    ("POST", f"{API}/workers/{{worker}}/disconnect"): (
        "Ask a worker to disconnect: the master closes its connection, and the worker process "
        "exits once its runs are complete."
    ),
    ("GET", f"{API}/audit"): (
        "The audit log: who changed what, when, from where (auditors and administrators)."
    ),
    ("GET", f"{P}/secrets"): "The project's secrets: names and dates, never their values.",
    ("PUT", f"{P}/secrets/{{name}}"): (
        "Set a project secret's value (stored encrypted; write-only: no route reads it back). "
        "Steps get it through `{secrets[NAME]}` in a command or the job's environment."
    ),
    ("DELETE", f"{P}/secrets/{{name}}"): "Delete a project secret.",
    ("GET", f"{P}/members"): "The project's members (users and groups) and their roles.",
    ("GET", f"{P}/notifications"): "The project's notifications.",
    ("POST", f"{P}/notifications"): (
        "Create a notification: events of the project's runs and pipeline runs sent, signed, "
        "to a URL (JSON or Slack format) or by e-mail."
    ),
    ("GET", f"{P}/notifications/{{notification}}"): "One notification (its secret never shown).",
    ("PUT", f"{P}/notifications/{{notification}}"): "Create or replace a notification.",
    ("PATCH", f"{P}/notifications/{{notification}}"): "Change some fields of a notification.",
    ("DELETE", f"{P}/notifications/{{notification}}"): "Delete a notification.",
    ("GET", f"{P}/notifications/{{notification}}/deliveries"): (
        "The notification's deliveries, newest first: each event's attempts, its status, the "
        "last error and when it is tried again."
    ),
    ("GET", f"{P}/pipelines"): "The project's pipelines.",
    ("POST", f"{P}/pipelines"): (
        "Create a pipeline: nodes running jobs or waiting for approvals, with their `needs`. "
        "Cycles, unknown nodes or jobs, and results of nodes that are not needs are refused "
        "(422, naming the node)."
    ),
    ("GET", f"{P}/pipelines/{{pipeline}}"): "One pipeline.",
    ("PUT", f"{P}/pipelines/{{pipeline}}"): (
        "Create or replace a pipeline. Pipeline runs already started keep their own copy."
    ),
    ("PATCH", f"{P}/pipelines/{{pipeline}}"): "Change some fields of a pipeline.",
    ("DELETE", f"{P}/pipelines/{{pipeline}}"): "Delete a pipeline.",
    ("POST", f"{P}/pipelines/{{pipeline}}/trigger"): (
        "Trigger a pipeline run: 201 with it, `running`; its nodes start as their needs allow."
    ),
    ("GET", f"{P}/pipeline-runs"): "The project's pipeline runs, newest first.",
    ("GET", f"{P}/pipeline-runs/{{run}}"): "One pipeline run with the status of every node.",
    ("POST", f"{P}/pipeline-runs/{{run}}/cancel"): (
        "Cancel a pipeline run: its pending runs are cancelled, its running ones aborted, the "
        "nodes not started skipped; 409 once it is final."
    ),
    ("POST", f"{P}/pipeline-runs/{{run}}/nodes/{{node}}/approve"): (
        "Approve a waiting approval node (operators and administrators); recorded with "
        "`decided_by` and in the audit log."
    ),
    ("POST", f"{P}/pipeline-runs/{{run}}/nodes/{{node}}/reject"): (
        "Reject a waiting approval node: it ends `failed`, and the nodes that needed it are "
        "skipped (or run, for `when: failure`)."
    ),
    ("POST", f"{API}/artifact-uploads/{{run}}"): (
        "For workers: start (or resume) the upload of one of a run's artifacts; the answer "
        "says from which byte to send."
    ),
    ("PUT", f"{API}/artifact-uploads/{{run}}"): (
        "For workers: send a chunk of an artifact, checked by its SHA-256."
    ),
    ("GET", f"{P}/runs/{{run}}/artifacts"): "The files a run left: paths, sizes and SHA-256.",
    ("GET", f"{P}/runs/{{run}}/artifacts/{{path}}"): (
        "Download one artifact, byte for byte, with its Content-Length and content type; "
        "`Range` requests are answered with 206."
    ),
    ("GET", f"{API}/events"): (
        "The live event stream (server-sent events): the changes to runs, pipeline runs, "
        "workers and schedules the caller may read, with ids to resume from (`Last-Event-ID`) "
        "and keep-alive comments."
    ),
}

# Path and query parameters, by name (an operation's own `description=` wins).
PARAMETERS: dict[str, str] = {
    "project": "the project's identifier",
    "job": "the job's identifier",
    "run": "the run's identifier (a UUID)",
    "pipeline": "the pipeline's identifier",
    "schedule": "the schedule's identifier",
    "user": "the user's identifier",
    "worker": "the worker's identifier",
    "token": "the token's identifier (not its secret)",
    "notification": "the notification's identifier",
    "node": "the node's identifier in the pipeline run",
    "name": "the secret's name",
    "member": "a user's identifier, or `group:NAME`",
    "index": "the step's index in the run, from 0",
    "path": "the artifact's path in the run's workspace, as listed",
    "limit": "the number of items in a page (default 50, at most 500)",
    "cursor": "where the page starts: the `next_cursor` of the page before",
    "status": "only the items with this status",
    "last-event-id": "resume after this event id (the last one received)",
    "Last-Event-ID": "resume after this event id (the last one received)",
}
