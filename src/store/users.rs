//! Users, sessions, failed-login back-off, queues.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{get_enum, is_unique_violation, Store, StoreError, StoreResult};
use crate::domain::{Queue, Role, User};

fn user_from_row(row: &AnyRow) -> StoreResult<User> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        role: get_enum(row, "role")?,
    })
}

/// Failed logins recorded for one username.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailedLogins {
    pub failures: i64,
    pub locked_until: i64,
    pub last_failure_at: i64,
}

impl Store {
    pub async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<User> {
        let row = sqlx::query(
            "INSERT INTO users (username, display_name, role, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id, username, display_name, role",
        )
        .bind(username)
        .bind(display_name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("user {username:?} already exists"))
            } else {
                e.into()
            }
        })?;
        user_from_row(&row)
    }

    /// Sets a user's password, role and display name (used by `demo` to reset its accounts).
    pub async fn update_user(
        &self,
        id: i64,
        display_name: &str,
        role: Role,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE users SET display_name = $1, role = $2, password_hash = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(display_name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now)
        .bind(id)
        .execute(&self.write_pool)
        .await?;
        Ok(())
    }

    /// A user and its password hash, for login; disabled users are not returned.
    pub async fn user_for_login(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT id, username, display_name, role, password_hash FROM users \
             WHERE username = $1 AND disabled = 0",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    pub async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let row =
            sqlx::query("SELECT id, username, display_name, role FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn get_user(&self, id: i64) -> StoreResult<User> {
        let row = sqlx::query("SELECT id, username, display_name, role FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from_row(&row)
    }

    pub async fn list_users(&self) -> StoreResult<Vec<User>> {
        sqlx::query("SELECT id, username, display_name, role FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    pub async fn count_users_with_role(&self, role: Role) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = $1 AND disabled = 0")
            .bind(role.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        // Expired sessions are swept whenever a new one starts: cheap, and no extra task.
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.write_pool)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.write_pool)
        .await?;
        Ok(())
    }

    /// The user of a live session, with the session's expiry.
    pub async fn session_user(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(User, i64)>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.role, s.expires_at FROM sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("expires_at")?)))
            .transpose()
    }

    pub async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.write_pool)
            .await?;
        Ok(())
    }

    pub async fn failed_logins(&self, username: &str) -> StoreResult<FailedLogins> {
        let row =
            sqlx::query(
                "SELECT failures, locked_until, last_failure_at FROM login_failures WHERE username = $1",
            )
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(r) => FailedLogins {
                failures: r.try_get("failures")?,
                locked_until: r.try_get("locked_until")?,
                last_failure_at: r.try_get("last_failure_at")?,
            },
            None => FailedLogins::default(),
        })
    }

    pub async fn record_failed_login(
        &self,
        username: &str,
        state: FailedLogins,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO login_failures (username, failures, locked_until, last_failure_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (username) DO UPDATE SET failures = excluded.failures, \
             locked_until = excluded.locked_until, last_failure_at = excluded.last_failure_at",
        )
        .bind(username)
        .bind(state.failures)
        .bind(state.locked_until)
        .bind(state.last_failure_at)
        .execute(&self.write_pool)
        .await?;
        Ok(())
    }

    pub async fn clear_failed_logins(&self, username: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM login_failures WHERE username = $1")
            .bind(username)
            .execute(&self.write_pool)
            .await?;
        Ok(())
    }

    pub async fn upsert_queue(
        &self,
        name: &str,
        display_name: &str,
        description: &str,
        now: i64,
    ) -> StoreResult<Queue> {
        let row = sqlx::query(
            "INSERT INTO queues (name, display_name, description, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET display_name = excluded.display_name, description = excluded.description \
             RETURNING id, name, display_name, description",
        )
        .bind(name)
        .bind(display_name)
        .bind(description)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(Queue {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            display_name: row.try_get("display_name")?,
            description: row.try_get("description")?,
        })
    }

    pub async fn list_queues(&self) -> StoreResult<Vec<Queue>> {
        let rows =
            sqlx::query("SELECT id, name, display_name, description FROM queues ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(Queue {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    display_name: row.try_get("display_name")?,
                    description: row.try_get("description")?,
                })
            })
            .collect()
    }
}
