//! Promotion (Patroni's `Postgresql.promote`): `pg_ctl promote`, then wait, bounded, until the
//! server really accepts writes; and the post-promotion checkpoint that pg_rewind on the old
//! primary depends on (Patroni publishes `checkpoint_after_promote` until it is done).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Postgres;
use crate::error::{Error, Result, Wait};

impl Postgres {
    /// Starts PostgreSQL as a primary (no recovery configuration): the lock holder
    /// restarting after a crash, on the same timeline, without a promotion.
    pub async fn start_as_primary(&self) -> Result<()> {
        self.set_recovery(None);
        self.start().await
    }

    /// Promotes a running replica and waits (bounded by `timeouts.promote`) until a write
    /// succeeds. The recovery configuration is dropped from `postgresql.conf`.
    pub async fn promote(&self) -> Result<()> {
        if !self.is_running() {
            return Err(Error::NotRunning);
        }
        let timeout = self.settings.timeouts.promote;
        self.bin
            .run(
                "pg_ctl",
                [
                    Path::new("promote"),
                    Path::new("-D"),
                    self.data_dir(),
                    Path::new("-W"),
                ],
                timeout,
            )
            .await?;
        self.wait_for_writes(timeout).await?;
        // Only now: PostgreSQL removes standby.signal itself during promotion and fails if it
        // is already gone.
        self.set_recovery(None);
        self.write_config()
    }

    /// Waits until the server leaves recovery and assigns a transaction id (a write).
    pub async fn wait_for_writes(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return Err(Error::NotRunning);
            }
            if let Ok(false) = self.is_in_recovery().await
                && self.query("SELECT txid_current()").await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: Wait::Promote,
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs `CHECKPOINT`. After a promotion this makes pg_control show the new timeline, which
    /// pg_rewind on the old primary needs.
    pub async fn checkpoint(&self) -> Result<()> {
        self.execute("CHECKPOINT").await
    }

    /// True when the latest checkpoint is on the current timeline (Patroni's
    /// `checkpoint_after_promote` is then true). Only meaningful on a primary.
    pub async fn checkpoint_after_promote_done(&self) -> Result<bool> {
        let rows = self
            .query(
                "SELECT (SELECT timeline_id FROM pg_control_checkpoint())::text, \
                 pg_walfile_name(pg_current_wal_lsn())",
            )
            .await?;
        let row = rows.first().ok_or(Error::NotRunning)?;
        let checkpoint: String = row.try_get(0)?;
        let walfile: String = row.try_get(1)?;
        Ok(checkpoint.parse::<u32>().ok() == crate::state::timeline_of_walfile(&walfile))
    }
}
