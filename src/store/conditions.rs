//! A [`Filter`]'s `WHERE` conditions, written once for both stores: each store names its
//! [`Dialect`] (how a parameter is written, how a set is matched) and binds the [`Param`]s in
//! its own driver's type.

use super::{Filter, Status};

/// How a store's SQL writes parameters and sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// PostgreSQL: `$n` parameters; a set is one array parameter (`= ANY($n)`).
    Postgres,
    /// SQLite: `?n` parameters; a set is one parameter per member (`IN (?a, ?b)`), and a set
    /// of statuses is written out (`IN (0, 2)`), which its planner matches with the partial
    /// index of pending and dead callbacks.
    Sqlite,
}

/// A value bound to a parameter of [`Conditions`], for the store to bind in its driver's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    /// A status code (PostgreSQL `smallint`).
    Status(i16),
    /// Status codes, as one PostgreSQL array.
    Statuses(Vec<i16>),
    /// An integer: a time in milliseconds, a `seq`, a row limit.
    Int(i64),
    /// A text.
    Text(String),
    /// Texts, as one PostgreSQL array.
    Texts(Vec<String>),
}

/// The conditions of a `WHERE` clause, each after ` AND `, and their parameters, numbered
/// from 1 in the order they are bound.
#[derive(Debug, Clone)]
pub(crate) struct Conditions {
    dialect: Dialect,
    /// ` AND …` for each condition; empty for none (the statement writes `WHERE true` first).
    pub(crate) sql: String,
    /// The parameters, in placeholder order.
    pub(crate) params: Vec<Param>,
}

impl Conditions {
    /// The conditions `filter` sets; with `with_status` false, none on the status (a caller
    /// that reads one range per status writes those itself).
    pub(crate) fn of(filter: &Filter, dialect: Dialect, with_status: bool) -> Self {
        let mut c = Self {
            dialect,
            sql: String::new(),
            params: Vec::new(),
        };
        let codes = filter.status_codes();
        let delivered = codes.contains(&Status::Delivered.code());
        if with_status && !codes.is_empty() {
            // `status <> 1` lets the planner use the partial index of pending and dead callbacks.
            if !delivered {
                c.and("status <> 1");
            }
            c.status_in(codes.clone());
        }
        if let Some(t) = filter.type_key() {
            // With a record, or only pending/dead callbacks, asked for, those indexes hold far
            // fewer rows than one type's: a column the type index does not match keeps the
            // planner off it (it would walk all of a type's callbacks for a few dead ones).
            let narrower = filter.record.is_some() || (!codes.is_empty() && !delivered);
            let column = match (narrower, dialect) {
                (false, _) => "callback_type",
                (true, Dialect::Postgres) => "(callback_type || '')",
                (true, Dialect::Sqlite) => "+callback_type",
            };
            let p = c.bind(Param::Text(t));
            c.and(&format!("upper({column}) = {p}"));
        }
        if let Some(code) = &filter.callback_code {
            c.equals("callback_code", Param::Text(code.clone()));
        }
        if let Some(r) = &filter.record {
            c.equals("record", Param::Text(r.clone()));
        }
        if let Some(t) = filter.received_after {
            let p = c.bind(Param::Int(t.timestamp_millis()));
            c.and(&format!("received_at >= {p}"));
        }
        if let Some(t) = filter.received_before {
            let p = c.bind(Param::Int(t.timestamp_millis()));
            c.and(&format!("received_at < {p}"));
        }
        let sources = filter.source_names();
        if !sources.is_empty() {
            c.text_in("source", sources.into_iter().map(str::to_owned).collect());
        }
        c
    }

    /// Adds the keyset condition of a newest-first page after the callback at `after_seq`,
    /// binds how many rows to read (`limit + 1`: the extra row only says that there is a next
    /// page) and answers that parameter's placeholder.
    pub(crate) fn newest_first(&mut self, after_seq: Option<i64>, limit: usize) -> String {
        if let Some(seq) = after_seq {
            let p = self.bind(Param::Int(seq));
            self.and(&format!("seq < {p}"));
        }
        self.bind(Param::Int(limit as i64 + 1))
    }

    /// Binds `param` and answers its placeholder.
    pub(crate) fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        match self.dialect {
            Dialect::Postgres => format!("${}", self.params.len()),
            Dialect::Sqlite => format!("?{}", self.params.len()),
        }
    }

    /// Adds ` AND condition`.
    pub(crate) fn and(&mut self, condition: &str) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
    }

    /// Adds ` AND column = <param>`.
    fn equals(&mut self, column: &str, param: Param) {
        let p = self.bind(param);
        self.and(&format!("{column} = {p}"));
    }

    /// Adds that the status is one of `codes` (sorted, without repeats, not empty).
    fn status_in(&mut self, codes: Vec<i16>) {
        match (self.dialect, &codes[..]) {
            // One status as a plain equality, so the (status, seq) index yields pages in order.
            (Dialect::Postgres, [code]) => self.equals("status", Param::Status(*code)),
            (Dialect::Postgres, _) => {
                let p = self.bind(Param::Statuses(codes));
                self.and(&format!("status = ANY({p})"));
            }
            (Dialect::Sqlite, _) => {
                let list: Vec<String> = codes.iter().map(i16::to_string).collect();
                self.and(&format!("status IN ({})", list.join(", ")));
            }
        }
    }

    /// Adds that `column` is one of `values` (not empty).
    fn text_in(&mut self, column: &str, values: Vec<String>) {
        match self.dialect {
            Dialect::Postgres => {
                let p = self.bind(Param::Texts(values));
                self.and(&format!("{column} = ANY({p})"));
            }
            Dialect::Sqlite => {
                let marks: Vec<String> = values
                    .into_iter()
                    .map(|v| self.bind(Param::Text(v)))
                    .collect();
                self.and(&format!("{column} IN ({})", marks.join(", ")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn everything() -> Filter {
        Filter {
            statuses: vec![Status::Dead, Status::Pending],
            callback_type: Some("auth".into()),
            callback_code: Some("AUTH_SUCCESS".into()),
            record: None,
            received_after: Some(Utc.timestamp_millis_opt(1_000).unwrap()),
            received_before: Some(Utc.timestamp_millis_opt(2_000).unwrap()),
            sources: vec!["plaid".into(), "okra".into()],
        }
    }

    #[test]
    fn each_dialect_writes_the_same_conditions_its_own_way() {
        let pg = Conditions::of(&everything(), Dialect::Postgres, true);
        assert_eq!(
            pg.sql,
            " AND status <> 1 AND status = ANY($1) AND upper((callback_type || '')) = $2 \
             AND callback_code = $3 AND received_at >= $4 AND received_at < $5 \
             AND source = ANY($6)"
        );
        assert_eq!(
            pg.params,
            vec![
                Param::Statuses(vec![0, 2]),
                Param::Text("AUTH".into()),
                Param::Text("AUTH_SUCCESS".into()),
                Param::Int(1_000),
                Param::Int(2_000),
                Param::Texts(vec!["okra".into(), "plaid".into()]),
            ]
        );
        let lite = Conditions::of(&everything(), Dialect::Sqlite, true);
        assert_eq!(
            lite.sql,
            " AND status <> 1 AND status IN (0, 2) AND upper(+callback_type) = ?1 \
             AND callback_code = ?2 AND received_at >= ?3 AND received_at < ?4 \
             AND source IN (?5, ?6)"
        );
        assert_eq!(
            lite.params,
            vec![
                Param::Text("AUTH".into()),
                Param::Text("AUTH_SUCCESS".into()),
                Param::Int(1_000),
                Param::Int(2_000),
                Param::Text("okra".into()),
                Param::Text("plaid".into()),
            ]
        );
    }

    #[test]
    fn one_status_is_an_equality_and_a_record_search_leaves_the_status_out() {
        let filter = Filter {
            statuses: vec![Status::Delivered],
            record: Some("r1".into()),
            ..Filter::default()
        };
        let pg = Conditions::of(&filter, Dialect::Postgres, true);
        assert_eq!(pg.sql, " AND status = $1 AND record = $2");
        assert_eq!(pg.params, vec![Param::Status(1), Param::Text("r1".into())]);
        let pg = Conditions::of(&filter, Dialect::Postgres, false);
        assert_eq!(pg.sql, " AND record = $1");
        let lite = Conditions::of(&filter, Dialect::Sqlite, true);
        assert_eq!(lite.sql, " AND status IN (1) AND record = ?1");
        let mut lite = Conditions::of(&Filter::default(), Dialect::Sqlite, true);
        assert!(lite.sql.is_empty());
        assert_eq!(lite.newest_first(Some(7), 50), "?2");
        assert_eq!(lite.sql, " AND seq < ?1");
        assert_eq!(lite.params, vec![Param::Int(7), Param::Int(51)]);
    }
}
