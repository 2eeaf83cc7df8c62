//! The durable store: jobs and their queue, attempts, events, templates, channels and webhook
//! deliveries, in SQLite (one file, nothing to set up) or PostgreSQL (a fleet shares one).
//!
//! One SQL text serves both through sqlx's Any driver (`$1` placeholders work on both); only
//! the table definitions and the claim's row lock differ. The queue is the jobs table itself:
//! a node claims the head of the queue with one conditional UPDATE (`FOR UPDATE SKIP LOCKED`
//! on PostgreSQL, SQLite's single writer elsewhere), holds it with a lease it renews, and a
//! job whose lease ran out (its node died) goes back to the queue or, after its last attempt,
//! fails as `interrupted`. State, progress and the claim live in one row, so a state change
//! is one statement and can never disagree with the queue.

use serde::de::DeserializeOwned;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

use super::model::{now_ms, JobError, Progress, State};
use super::options::{JobRequest, Resolved};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database: a stored record is unreadable: {0}")]
    Corrupt(String),
    #[error("database URL {0:?}: expected sqlite://PATH or postgres://…")]
    Url(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pub(super) pool: AnyPool,
    pub dialect: Dialect,
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub state: State,
    pub priority: i64,
    pub input: String,
    pub request: JobRequest,
    pub options: Resolved,
    pub cost_milli: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub node: Option<String>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub cancel_requested: bool,
    pub progress: Option<Progress>,
    pub error: Option<JobError>,
    pub summary: Option<serde_json::Value>,
}

/// A new job, checked and resolved.
pub struct NewJob {
    pub id: String,
    pub input: String,
    pub request: JobRequest,
    pub options: Resolved,
    pub cost_milli: i64,
    pub max_attempts: i64,
    /// With the hash of the request it came with.
    pub idempotency: Option<(String, String)>,
}

pub enum Inserted {
    Created(JobRow),
    /// The same key and body came before: the first job.
    Existing(JobRow),
    /// The key came before with another body.
    Conflict(String),
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub number: i64,
    pub node: String,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub data: String,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    #[serde(skip)]
    pub job_id: String,
    pub event: String,
    pub url: String,
    #[serde(skip)]
    pub payload: String,
    pub created_at: String,
    pub attempts: i64,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

/// What cancelling did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancel {
    /// It was queued: cancelled now.
    Cancelled,
    /// It is running: its node stops it.
    Requested,
    /// It had already finished.
    Final(State),
    NotFound,
}

/// How long an `auto` job waits for a GPU node before a node without one takes it (when a
/// healthy GPU node has room; when none has, it is taken at once).
pub const GPU_FIRST_MS: i64 = 3_000;

/// What a node can run.
#[derive(Debug, Clone)]
pub struct Abilities {
    /// Usable encoding backends: nvenc, vaapi, software.
    pub backends: Vec<String>,
    /// A GPU backend is among them: `auto` jobs come here first.
    pub gpu: bool,
    /// The fleet's lease time: a heartbeat older than this is a node gone.
    pub lease_ms: i64,
}

impl Abilities {
    pub fn new(backends: Vec<String>, lease_ms: i64) -> Abilities {
        let gpu = backends.iter().any(|b| b != "software");
        Abilities {
            backends,
            gpu,
            lease_ms,
        }
    }

    /// `,nvenc,software,`: matched with LIKE in the claim.
    pub(super) fn backend_list(&self) -> String {
        format!(",{},", self.backends.join(","))
    }
}

fn schema(dialect: Dialect) -> Vec<String> {
    let serial = match dialect {
        Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Dialect::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    };
    vec![
        "CREATE TABLE IF NOT EXISTS jobs (
            id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            priority BIGINT NOT NULL,
            input TEXT NOT NULL,
            request TEXT NOT NULL,
            options TEXT NOT NULL,
            cost_milli BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            not_before BIGINT NOT NULL,
            node TEXT,
            lease_until BIGINT,
            attempts BIGINT NOT NULL,
            max_attempts BIGINT NOT NULL,
            cancel_requested BIGINT NOT NULL,
            progress TEXT,
            error TEXT,
            summary TEXT,
            idempotency_key TEXT UNIQUE,
            request_hash TEXT,
            backend TEXT NOT NULL DEFAULT 'auto')"
            .into(),
        "CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority, created_at)".into(),
        "CREATE TABLE IF NOT EXISTS job_attempts (
            job_id TEXT NOT NULL,
            number BIGINT NOT NULL,
            node TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            ended_at BIGINT,
            outcome TEXT,
            PRIMARY KEY (job_id, number))"
            .into(),
        format!(
            "CREATE TABLE IF NOT EXISTS job_events (
            id {serial},
            job_id TEXT NOT NULL,
            at BIGINT NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL)"
        ),
        "CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job_id, id)".into(),
        // The fleet's nodes (fleet.rs).
        "CREATE TABLE IF NOT EXISTS nodes (
            name TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            profile TEXT,
            backends TEXT NOT NULL,
            gpu BIGINT NOT NULL,
            capacity_milli BIGINT NOT NULL,
            used_milli BIGINT NOT NULL,
            running BIGINT NOT NULL,
            version TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            heartbeat_at BIGINT NOT NULL,
            draining BIGINT NOT NULL DEFAULT 0)"
            .into(),
        "CREATE TABLE IF NOT EXISTS templates (
            name TEXT PRIMARY KEY,
            options TEXT NOT NULL,
            updated_at BIGINT NOT NULL)"
            .into(),
        "CREATE TABLE IF NOT EXISTS channels (
            name TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            created_at BIGINT NOT NULL)"
            .into(),
        // Which node carries each live channel of a fleet (fleet.rs).
        "CREATE TABLE IF NOT EXISTS channel_leases (
            channel TEXT PRIMARY KEY,
            node TEXT NOT NULL,
            taken_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL)"
            .into(),
        "CREATE TABLE IF NOT EXISTS webhook_deliveries (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            event TEXT NOT NULL,
            url TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            attempts BIGINT NOT NULL,
            next_at BIGINT NOT NULL,
            status TEXT NOT NULL,
            last_status BIGINT,
            last_error TEXT,
            delivered_at BIGINT)"
            .into(),
        "CREATE INDEX IF NOT EXISTS deliveries_due ON webhook_deliveries (status, next_at)".into(),
    ]
}

const JOB_COLUMNS: &str = "id, state, priority, input, request, options, cost_milli, created_at, \
    updated_at, node, attempts, max_attempts, cancel_requested, progress, error, summary";

fn json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn opt_json<T: DeserializeOwned>(text: Option<String>) -> Result<Option<T>, StoreError> {
    text.map(|t| json(&t)).transpose()
}

/// Closes attempt `number` of job `id`, in the transaction that changes the job's state.
async fn end_attempt(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    number: i64,
    outcome: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE job_attempts SET ended_at = $3, outcome = $4
         WHERE job_id = $1 AND number = $2 AND ended_at IS NULL",
    )
    .bind(id)
    .bind(number)
    .bind(now_ms())
    .bind(outcome)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

impl JobRow {
    fn from_row(row: &AnyRow) -> Result<JobRow, StoreError> {
        let state: String = row.try_get("state")?;
        Ok(JobRow {
            id: row.try_get("id")?,
            state: State::parse(&state).ok_or_else(|| StoreError::Corrupt(state.clone()))?,
            priority: row.try_get("priority")?,
            input: row.try_get("input")?,
            request: json(&row.try_get::<String, _>("request")?)?,
            options: json(&row.try_get::<String, _>("options")?)?,
            cost_milli: row.try_get("cost_milli")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            node: row.try_get("node")?,
            attempts: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
            cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
            progress: opt_json(row.try_get("progress")?)?,
            error: opt_json(row.try_get("error")?)?,
            summary: opt_json(row.try_get("summary")?)?,
        })
    }
}

impl Store {
    /// Opens (creating when needed) the database at `url`: `sqlite://PATH` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(StoreError::Url(url.into()));
        };
        let options = AnyPoolOptions::new()
            .max_connections(match dialect {
                Dialect::Sqlite => 4,
                Dialect::Postgres => 8,
            })
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL: readers never wait for the writer; NORMAL: a crash of the
                        // process loses nothing (only a power cut may lose the last commits).
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            });
        let url = match dialect {
            Dialect::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let pool = options.connect(&url).await?;
        let store = Store { pool, dialect };
        for statement in schema(dialect) {
            store.pool.execute(AssertSqlSafe(statement)).await?;
        }
        // Columns added since the first release, for stores made before them.
        store
            .add_missing_column("jobs", "backend", "TEXT NOT NULL DEFAULT 'auto'")
            .await?;
        Ok(store)
    }

    async fn add_missing_column(
        &self,
        table: &str,
        column: &str,
        definition: &str,
    ) -> Result<(), StoreError> {
        let probe = format!("SELECT {column} FROM {table} LIMIT 0");
        if self.pool.execute(AssertSqlSafe(probe)).await.is_err() {
            let add = format!("ALTER TABLE {table} ADD COLUMN {column} {definition}");
            self.pool.execute(AssertSqlSafe(add)).await?;
        }
        Ok(())
    }

    /// Shared by several nodes (PostgreSQL): a fleet, where live channels are leased.
    pub fn is_shared(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// The database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn insert_job(&self, new: NewJob) -> Result<Inserted, StoreError> {
        if let Some((key, hash)) = &new.idempotency {
            if let Some(found) = self.job_by_key(key, hash).await? {
                return Ok(found);
            }
        }
        let now = now_ms();
        let (key, hash) = new.idempotency.clone().unzip();
        // The row as inserted (RETURNING): a scheduler may claim it before a second look.
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO jobs (id, state, priority, input, request, options, cost_milli, created_at,
                updated_at, not_before, attempts, max_attempts, cancel_requested,
                idempotency_key, request_hash, backend)
             VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $7, $7, 0, $8, 0, $9, $10, $11)
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(&new.id)
        .bind(new.request.priority)
        .bind(&new.input)
        .bind(to_json(&new.request))
        .bind(to_json(&new.options))
        .bind(new.cost_milli)
        .bind(now)
        .bind(new.max_attempts)
        .bind(key.clone())
        .bind(hash.clone())
        .bind(&new.options.backend)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => Ok(Inserted::Created(JobRow::from_row(&row)?)),
            // Two requests with one key at once: the other one won.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && key.is_some() => {
                let (key, hash) = new.idempotency.expect("checked");
                if let Some(found) = self.job_by_key(&key, &hash).await? {
                    return Ok(found);
                }
                Err(sqlx::Error::Database(e).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn job_by_key(&self, key: &str, hash: &str) -> Result<Option<Inserted>, StoreError> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS}, request_hash FROM jobs WHERE idempotency_key = $1"
        )))
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = found else { return Ok(None) };
        let stored: Option<String> = row.try_get("request_hash")?;
        let job = JobRow::from_row(&row)?;
        Ok(Some(if stored.as_deref() == Some(hash) {
            Inserted::Existing(job)
        } else {
            Inserted::Conflict(job.id)
        }))
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(JobRow::from_row).transpose()
    }

    /// Newest first; `before` is the last id of the previous page (ids sort by creation).
    pub async fn list_jobs(
        &self,
        state: Option<State>,
        limit: i64,
        before: Option<&str>,
    ) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE ($1 = '' OR state = $1) AND ($2 = '' OR id < $2)
             ORDER BY id DESC LIMIT $3"
        )))
        .bind(state.map_or("", State::as_str))
        .bind(before.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(JobRow::from_row).collect()
    }

    /// Jobs in each state, for metrics and `/readyz`.
    pub async fn count_by_state(&self) -> Result<Vec<(State, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut counts: Vec<(State, i64)> = State::ALL.iter().map(|&s| (s, 0)).collect();
        for row in rows {
            let state: String = row.try_get("state")?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| s.as_str() == state) {
                slot.1 = row.try_get("n")?;
            }
        }
        Ok(counts)
    }

    /// Claims the head of the queue (highest priority, then oldest) among the jobs `node` can
    /// run, when its cost fits in `free_milli`; a job larger than the whole node runs when the
    /// node is idle. A draining node claims nothing.
    ///
    /// What a node can run: a job naming a backend goes only to a node where it is usable; an
    /// `auto` job anywhere, GPU nodes first (a node without one takes it once it has waited
    /// [`GPU_FIRST_MS`], or when no healthy GPU node has room).
    pub async fn claim_next(
        &self,
        node: &str,
        can: &Abilities,
        free_milli: i64,
        capacity_milli: i64,
        lease_until: i64,
    ) -> Result<Option<JobRow>, StoreError> {
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let now = now_ms();
        // The claim and its attempt record commit together: a reader never sees one alone.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'running', node = $1, lease_until = $2, updated_at = $3,
                attempts = attempts + 1, progress = NULL, error = NULL
             WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND not_before <= $3
                           AND ($6 LIKE '%,' || backend || ',%' OR backend = 'auto')
                           AND (backend <> 'auto' OR $7 = 1 OR not_before <= $3 - $8
                                OR NOT EXISTS (SELECT 1 FROM nodes WHERE gpu = 1 AND draining = 0
                                  AND heartbeat_at >= $3 - $9 AND used_milli < capacity_milli))
                         ORDER BY priority DESC, created_at ASC, id ASC LIMIT 1 {lock})
               AND state = 'queued' AND (cost_milli <= $4 OR $4 >= $5)
               AND NOT EXISTS (SELECT 1 FROM nodes WHERE name = $1 AND draining = 1)
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(node)
        .bind(lease_until)
        .bind(now)
        .bind(free_milli)
        .bind(capacity_milli)
        .bind(can.backend_list())
        .bind(i64::from(can.gpu))
        .bind(GPU_FIRST_MS)
        .bind(can.lease_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            // The head of the queue may not fit (too big for the room left): the subquery
            // locked its row all the same. Release it now: a dropped transaction is rolled
            // back only when its connection is next used, and until then other claims skip
            // that row and start a lower-priority job before it (seen once in CI).
            tx.rollback().await?;
            return Ok(None);
        };
        let job = JobRow::from_row(&row)?;
        sqlx::query(
            "INSERT INTO job_attempts (job_id, number, node, started_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&job.id)
        .bind(job.attempts)
        .bind(node)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    /// Renews the leases of `node`'s running jobs; returns those asked to cancel.
    pub async fn renew_leases(
        &self,
        node: &str,
        lease_until: i64,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query("UPDATE jobs SET lease_until = $2 WHERE node = $1 AND state = 'running'")
            .bind(node)
            .bind(lease_until)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query(
            "SELECT id FROM jobs WHERE node = $1 AND state = 'running' AND cancel_requested = 1",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
    }

    /// Running jobs whose node is gone: `node`'s own (it restarted) and any whose lease ran
    /// out. Each goes back to the queue, or fails as `interrupted` after its last attempt.
    /// Returns the jobs changed and their new state.
    pub async fn recover_interrupted(
        &self,
        node: &str,
    ) -> Result<Vec<(String, State)>, StoreError> {
        let now = now_ms();
        let rows = sqlx::query(
            "SELECT id, attempts, max_attempts FROM jobs
             WHERE state = 'running' AND (node = $1 OR lease_until < $2)",
        )
        .bind(node)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut changed = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let attempts: i64 = row.try_get("attempts")?;
            let max: i64 = row.try_get("max_attempts")?;
            let (state, error) = if attempts < max {
                (State::Queued, None)
            } else {
                (
                    State::Failed,
                    Some(to_json(&JobError::interrupted(attempts))),
                )
            };
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(
                "UPDATE jobs SET state = $2, error = $3, node = NULL, lease_until = NULL,
                    progress = NULL, updated_at = $4, not_before = $4
                 WHERE id = $1 AND state = 'running' AND (node = $5 OR lease_until < $4)",
            )
            .bind(&id)
            .bind(state.as_str())
            .bind(error)
            .bind(now)
            .bind(node)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                end_attempt(&mut tx, &id, attempts, "interrupted").await?;
                changed.push((id, state));
            }
            tx.commit().await?;
        }
        Ok(changed)
    }

    /// `node` stops in good order: its running jobs go back to the queue at once, and the
    /// attempt they lose does not count against them.
    pub async fn release_node(&self, node: &str) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'queued', node = NULL, lease_until = NULL, progress = NULL,
                max_attempts = max_attempts + 1, updated_at = $2, not_before = $2
             WHERE node = $1 AND state = 'running'
             RETURNING id, attempts",
        )
        .bind(node)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut released = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            end_attempt(&mut tx, &id, row.try_get("attempts")?, "node_stopped").await?;
            released.push(id);
        }
        tx.commit().await?;
        Ok(released)
    }

    pub async fn set_progress(&self, id: &str, progress: &Progress) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET progress = $2, updated_at = $3 WHERE id = $1 AND state = 'running'",
        )
        .bind(id)
        .bind(to_json(progress))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends `node`'s attempt of a running job. `retry_after_ms`: a failure goes back to the
    /// queue (not before then) instead of failing, when attempts remain.
    pub async fn finish(
        &self,
        job: &JobRow,
        node: &str,
        outcome: Result<&serde_json::Value, &JobError>,
        retry_after_ms: Option<i64>,
    ) -> Result<Option<State>, StoreError> {
        let now = now_ms();
        let (state, error, summary) = match outcome {
            Ok(summary) => (State::Succeeded, None, Some(to_json(summary))),
            Err(e) if e.code == "cancelled" => (State::Cancelled, None, None),
            Err(e) => match retry_after_ms {
                Some(_) if job.attempts < job.max_attempts && e.retryable => {
                    (State::Queued, Some(to_json(e)), None)
                }
                _ => (State::Failed, Some(to_json(e)), None),
            },
        };
        let not_before = now + retry_after_ms.unwrap_or(0);
        let mut tx = self.pool.begin().await?;
        // Fenced by node and attempt: the result of an attempt whose lease ran out (its job
        // now runs elsewhere, or again here) is refused.
        let done = sqlx::query(
            "UPDATE jobs SET state = $2, error = $3, summary = $4, progress = NULL, node = NULL,
                lease_until = NULL, updated_at = $5, not_before = $6
             WHERE id = $1 AND state = 'running' AND node = $7 AND attempts = $8",
        )
        .bind(&job.id)
        .bind(state.as_str())
        .bind(error)
        .bind(summary)
        .bind(now)
        .bind(not_before)
        .bind(node)
        .bind(job.attempts)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let outcome = match (&outcome, state) {
            (Ok(_), _) => "succeeded",
            (Err(_), State::Cancelled) => "cancelled",
            (Err(e), _) => e.code.as_str(),
        };
        end_attempt(&mut tx, &job.id, job.attempts, outcome).await?;
        tx.commit().await?;
        Ok(Some(state))
    }

    pub async fn cancel(&self, id: &str) -> Result<Cancel, StoreError> {
        let now = now_ms();
        let queued = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', updated_at = $2 WHERE id = $1 AND state = 'queued'",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if queued.rows_affected() == 1 {
            return Ok(Cancel::Cancelled);
        }
        let running = sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, updated_at = $2 WHERE id = $1 AND state = 'running'",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if running.rows_affected() == 1 {
            return Ok(Cancel::Requested);
        }
        Ok(match self.job(id).await? {
            Some(job) => Cancel::Final(job.state),
            None => Cancel::NotFound,
        })
    }

    /// A failed or cancelled job back in the queue, with a fresh budget of attempts.
    pub async fn retry(&self, id: &str, max_attempts: i64) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', error = NULL, summary = NULL, progress = NULL,
                cancel_requested = 0, max_attempts = attempts + $2, updated_at = $3, not_before = $3
             WHERE id = $1 AND state IN ('failed', 'cancelled')",
        )
        .bind(id)
        .bind(max_attempts)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a finished job and everything recorded about it.
    pub async fn delete_job(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id = $1 AND state IN ('succeeded', 'failed', 'cancelled')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            for table in ["job_attempts", "job_events", "webhook_deliveries"] {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE job_id = $1"
                )))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn attempts(&self, id: &str) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, node, started_at, ended_at, outcome FROM job_attempts
             WHERE job_id = $1 ORDER BY number",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Attempt {
                    number: r.try_get("number")?,
                    node: r.try_get("node")?,
                    started_at: super::model::rfc3339(r.try_get("started_at")?),
                    ended_at: r
                        .try_get::<Option<i64>, _>("ended_at")?
                        .map(super::model::rfc3339),
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect()
    }

    /// Records an event of a job; returns its id (increasing, the SSE `id:`).
    pub async fn append_event(
        &self,
        job_id: &str,
        kind: &str,
        data: &str,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO job_events (job_id, at, kind, data) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(job_id)
        .bind(now_ms())
        .bind(kind)
        .bind(data)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    pub async fn events_after(&self, job_id: &str, after: i64) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, data FROM job_events WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT 500",
        )
        .bind(job_id)
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    data: r.try_get("data")?,
                })
            })
            .collect()
    }

    // Templates: named option sets.

    pub async fn put_template(&self, name: &str, options: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let updated =
            sqlx::query("UPDATE templates SET options = $2, updated_at = $3 WHERE name = $1")
                .bind(name)
                .bind(options)
                .bind(now)
                .execute(&self.pool)
                .await?;
        if updated.rows_affected() == 1 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO templates (name, options, updated_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(options)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    pub async fn template(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT options FROM templates WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("options")).transpose()?)
    }

    pub async fn templates(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, options FROM templates ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("options")?)))
            .collect()
    }

    pub async fn delete_template(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM templates WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // Channels created over the API (the configuration's are not stored).

    pub async fn insert_channel(&self, name: &str, spec: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("INSERT INTO channels (name, spec, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(spec)
            .bind(now_ms())
            .execute(&self.pool)
            .await;
        match done {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn channels(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, spec FROM channels ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("spec")?)))
            .collect()
    }

    pub async fn delete_channel(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM channels WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // Webhook deliveries: written with the state change, sent (and retried) by the sender.

    pub async fn insert_delivery(
        &self,
        id: &str,
        job_id: &str,
        event: &str,
        url: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, job_id, event, url, payload, created_at, attempts,
                next_at, status)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $6, 'pending')",
        )
        .bind(id)
        .bind(job_id)
        .bind(event)
        .bind(url)
        .bind(payload)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    const DELIVERY_COLUMNS: &'static str =
        "id, job_id, event, url, payload, created_at, attempts, \
        status, last_status, last_error, delivered_at";

    fn delivery(r: &AnyRow) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            id: r.try_get("id")?,
            job_id: r.try_get("job_id")?,
            event: r.try_get("event")?,
            url: r.try_get("url")?,
            payload: r.try_get("payload")?,
            created_at: super::model::rfc3339(r.try_get("created_at")?),
            attempts: r.try_get("attempts")?,
            status: r.try_get("status")?,
            last_status: r.try_get("last_status")?,
            last_error: r.try_get("last_error")?,
            delivered_at: r
                .try_get::<Option<i64>, _>("delivered_at")?
                .map(super::model::rfc3339),
        })
    }

    /// Pending deliveries that are due, oldest first.
    pub async fn due_deliveries(&self, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM webhook_deliveries WHERE status = 'pending' AND next_at <= $1
             ORDER BY created_at, id LIMIT $2",
            Self::DELIVERY_COLUMNS
        )))
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::delivery).collect()
    }

    /// Takes a due delivery for one try: its next time moves `for_ms` ahead, so no other node
    /// sends it meanwhile (and if this one dies mid-try, another sends it after that). False
    /// when another node took it first.
    pub async fn claim_delivery(&self, id: &str, for_ms: i64) -> Result<bool, StoreError> {
        let now = now_ms();
        let taken = sqlx::query(
            "UPDATE webhook_deliveries SET next_at = $2
             WHERE id = $1 AND status = 'pending' AND next_at <= $3",
        )
        .bind(id)
        .bind(now + for_ms)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    pub async fn deliveries(&self, job_id: &str) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM webhook_deliveries WHERE job_id = $1 ORDER BY created_at, id",
            Self::DELIVERY_COLUMNS
        )))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::delivery).collect()
    }

    /// Records one try: delivered, retried at `next_at`, or given up (`next_at` None).
    pub async fn record_delivery(
        &self,
        id: &str,
        delivered: bool,
        status: Option<i64>,
        error: Option<&str>,
        next_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let state = match (delivered, next_at) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = $2, last_status = $3,
                last_error = $4, next_at = $5, delivered_at = $6
             WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(status)
        .bind(error)
        .bind(next_at.unwrap_or(now))
        .bind(delivered.then_some(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
