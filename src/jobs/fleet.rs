//! The nodes of a fleet on one store: each registers itself and heartbeats (its hw-profile,
//! usable backends, capacity and load), claims only the work its hardware can do, and can be
//! drained for an upgrade (it claims nothing new; what runs finishes).
//!
//! A node is healthy while its heartbeat is younger than the lease time: past that, the other
//! nodes give its running jobs back to the queue as a new attempt (service.rs), and a late
//! result of the old attempt is refused (the store fences every result by node and attempt).
//!
//! Live channels of a fleet are held the same way, by a lease row per channel: the node that
//! holds it carries the channel and renews it; when it stops renewing, another node that can
//! carry the channel takes the row and starts it at the live edge (daemon/channels.rs).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::model::{now_ms, rfc3339};
pub use super::store::{Abilities, GPU_FIRST_MS};
use super::store::{Store, StoreError};

/// What a node says of itself at each heartbeat.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub url: String,
    pub profile: Option<String>,
    pub capacity_milli: i64,
    pub used_milli: i64,
    pub running: i64,
}

/// A node as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub name: String,
    /// Where its origin and API answer.
    pub url: String,
    /// The hw-profile that matched its machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Usable encoding backends.
    pub backends: Vec<String>,
    /// Capacity units, and those in use by its jobs and live channels.
    pub capacity: f64,
    pub used: f64,
    /// Jobs running on it.
    pub running_jobs: i64,
    pub version: String,
    pub started_at: String,
    pub heartbeat_at: String,
    /// Its heartbeat is younger than the lease time.
    pub healthy: bool,
    /// It claims no new job.
    pub draining: bool,
}

fn node_view(row: &AnyRow, lease_ms: i64) -> Result<NodeView, StoreError> {
    let backends: String = row.try_get("backends")?;
    let heartbeat: i64 = row.try_get("heartbeat_at")?;
    Ok(NodeView {
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        profile: row.try_get("profile")?,
        backends: backends
            .split(',')
            .filter(|b| !b.is_empty())
            .map(str::to_string)
            .collect(),
        capacity: row.try_get::<i64, _>("capacity_milli")? as f64 / 1000.0,
        used: row.try_get::<i64, _>("used_milli")? as f64 / 1000.0,
        running_jobs: row.try_get("running")?,
        version: row.try_get("version")?,
        started_at: rfc3339(row.try_get("started_at")?),
        heartbeat_at: rfc3339(heartbeat),
        healthy: heartbeat >= now_ms() - lease_ms,
        draining: row.try_get::<i64, _>("draining")? != 0,
    })
}

const NODE_COLUMNS: &str = "name, url, profile, backends, capacity_milli, used_milli, running, \
                            version, started_at, heartbeat_at, draining";

impl Store {
    /// Registers `name` (at its start: `started` is true) or renews its heartbeat. A node
    /// keeps its draining mark across restarts: an upgrade restarts it drained.
    pub async fn heartbeat(
        &self,
        name: &str,
        can: &Abilities,
        beat: &Heartbeat,
        started: bool,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO nodes (name, url, profile, backends, gpu, capacity_milli, used_milli,
                running, version, started_at, heartbeat_at, draining)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, 0)
             ON CONFLICT (name) DO UPDATE SET url = excluded.url, profile = excluded.profile,
                backends = excluded.backends, gpu = excluded.gpu,
                capacity_milli = excluded.capacity_milli, used_milli = excluded.used_milli,
                running = excluded.running, version = excluded.version,
                heartbeat_at = excluded.heartbeat_at,
                started_at = CASE WHEN $11 = 1 THEN excluded.started_at ELSE nodes.started_at END",
        )
        .bind(name)
        .bind(&beat.url)
        .bind(beat.profile.clone())
        .bind(can.backends.join(","))
        .bind(i64::from(can.gpu))
        .bind(beat.capacity_milli)
        .bind(beat.used_milli)
        .bind(beat.running)
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(now)
        .bind(i64::from(started))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `name` stopped in good order: listed as not healthy at once.
    pub async fn node_stopped(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE nodes SET heartbeat_at = 0, used_milli = 0, running = 0 WHERE name = $1",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every node that ever registered, by name.
    pub async fn nodes(&self, lease_ms: i64) -> Result<Vec<NodeView>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {NODE_COLUMNS} FROM nodes ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| node_view(r, lease_ms)).collect()
    }

    pub async fn node(&self, name: &str, lease_ms: i64) -> Result<Option<NodeView>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| node_view(r, lease_ms)).transpose()
    }

    /// Marks `name` draining (or not); the node as it is now, if it exists.
    pub async fn set_draining(
        &self,
        name: &str,
        draining: bool,
        lease_ms: i64,
    ) -> Result<Option<NodeView>, StoreError> {
        sqlx::query("UPDATE nodes SET draining = $2 WHERE name = $1")
            .bind(name)
            .bind(i64::from(draining))
            .execute(&self.pool)
            .await?;
        self.node(name, lease_ms).await
    }
}

/// Who carries a live channel of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelLease {
    pub channel: String,
    pub node: String,
    /// Since when this node holds it (ms since the Unix epoch).
    pub taken_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// Takes (or keeps) the lease of `channel` for `node` until `until`: succeeds when nobody
    /// holds it, when `node` already does, or (with `judge`) when the holder's lease ran out
    /// before `now`.
    pub async fn take_channel(
        &self,
        channel: &str,
        node: &str,
        now: i64,
        until: i64,
        judge: bool,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO channel_leases (channel, node, taken_at, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (channel) DO UPDATE SET node = excluded.node,
                expires_at = excluded.expires_at,
                taken_at = CASE WHEN channel_leases.node = excluded.node
                           THEN channel_leases.taken_at ELSE excluded.taken_at END
             WHERE channel_leases.node = excluded.node
                OR ($5 = 1 AND channel_leases.expires_at < $3)",
        )
        .bind(channel)
        .bind(node)
        .bind(now)
        .bind(until)
        .bind(i64::from(judge))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Renews `node`'s lease of `channel`; false when another node holds it now.
    pub async fn renew_channel(
        &self,
        channel: &str,
        node: &str,
        until: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE channel_leases SET expires_at = $3 WHERE channel = $1 AND node = $2",
        )
        .bind(channel)
        .bind(node)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `node` stopped carrying `channel` in good order: another node may take it at once.
    pub async fn release_channel(&self, channel: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM channel_leases WHERE channel = $1 AND node = $2")
            .bind(channel)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every channel lease, by channel.
    pub async fn channel_leases(&self) -> Result<Vec<ChannelLease>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, node, taken_at, expires_at FROM channel_leases ORDER BY channel",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ChannelLease {
                    channel: r.try_get("channel")?,
                    node: r.try_get("node")?,
                    taken_at: r.try_get("taken_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }
}
