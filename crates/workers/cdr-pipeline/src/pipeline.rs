//! The batch handler: parse every record, store the valid ones in one transaction.

use akira_workers::metrics::WorkerMetrics;
use akira_workers::{Delivery, HandlerError, HandlerResult};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sqlx::PgPool;

use crate::record::{self, ExtraFields};
use crate::store::{self, Row};

/// The result of inserting a record, the `result` label of `akira_cdr_pipeline_records_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum RecordResult {
    /// A new row.
    inserted,
    /// The record was stored before (a redelivery, or a byte-identical record).
    duplicate,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    result: RecordResult,
}

pub struct Pipeline {
    pool: PgPool,
    extra_fields: ExtraFields,
    records: Family<RecordLabels, Counter>,
}

impl Pipeline {
    /// Creates the handler state and registers its series with the worker's metrics.
    pub fn new(pool: PgPool, extra_fields: ExtraFields, metrics: &WorkerMetrics) -> Pipeline {
        let records = Family::<RecordLabels, Counter>::default();
        metrics.register(
            "akira_cdr_pipeline_records",
            "Records written to cdr_events, by result: inserted, or duplicate when the row existed",
            records.clone(),
        );
        Pipeline {
            pool,
            extra_fields,
            records,
        }
    }

    /// Returns one result per delivery, in order.
    ///
    /// An unparseable record is a permanent error naming the field. The valid records go to
    /// PostgreSQL in one transaction. When that fails because the database is unreachable or
    /// busy, every valid record of the batch is retried. When PostgreSQL rejects the data
    /// itself, each record is inserted on its own so that only the rejected ones fail.
    pub async fn handle_batch(&self, deliveries: Vec<Delivery>) -> Vec<HandlerResult> {
        let mut results = Vec::with_capacity(deliveries.len());
        let mut rows = Vec::new();
        for (index, delivery) in deliveries.iter().enumerate() {
            match record::parse(delivery.payload(), &self.extra_fields) {
                Ok(record) => {
                    let source = store::source_of(delivery.subject());
                    rows.push((
                        index,
                        Row::new(
                            source,
                            delivery.payload(),
                            delivery.stream_sequence(),
                            record,
                        ),
                    ));
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(HandlerError::permanent(error))),
            }
        }
        if rows.is_empty() {
            return results;
        }

        // Rows in key order take their locks in the same order in every transaction, so two
        // batches with the same records wait for each other instead of deadlocking.
        rows.sort_by(|(_, a), (_, b)| {
            (&a.source, &a.record_sha256).cmp(&(&b.source, &b.record_sha256))
        });

        match self.insert_batch(&rows).await {
            Ok(inserted) => self.count(inserted, rows.len() as u64),
            Err(error) if store::is_data_error(&error) => {
                tracing::warn!(
                    error = %error,
                    records = rows.len(),
                    "PostgreSQL rejected a record of the batch; inserting the records one by one"
                );
                self.insert_each(&rows, &mut results).await;
            }
            Err(error) => {
                let message = format!(
                    "inserting {} records into cdr_events failed: {error}; retrying when PostgreSQL is reachable",
                    rows.len()
                );
                for (index, _) in &rows {
                    results[*index] = Err(HandlerError::retry(message.clone()));
                }
            }
        }
        results
    }

    async fn insert_batch(&self, rows: &[(usize, Row)]) -> Result<u64, sqlx::Error> {
        let batch: Vec<&Row> = rows.iter().map(|(_, row)| row).collect();
        let mut transaction = self.pool.begin().await?;
        let inserted = store::insert(&mut *transaction, &batch).await?;
        transaction.commit().await?;
        Ok(inserted)
    }

    async fn insert_each(&self, rows: &[(usize, Row)], results: &mut [HandlerResult]) {
        for (index, row) in rows {
            match store::insert(&self.pool, &[row]).await {
                Ok(inserted) => self.count(inserted, 1),
                Err(error) if store::is_data_error(&error) => {
                    results[*index] = Err(HandlerError::permanent(format!(
                        "PostgreSQL rejected the record of call {:?}: {error}",
                        row.record.callid
                    )));
                }
                Err(error) => {
                    results[*index] = Err(HandlerError::retry(format!(
                        "inserting into cdr_events failed: {error}"
                    )));
                }
            }
        }
    }

    fn count(&self, inserted: u64, total: u64) {
        let labels = |result| RecordLabels { result };
        self.records
            .get_or_create(&labels(RecordResult::inserted))
            .inc_by(inserted);
        self.records
            .get_or_create(&labels(RecordResult::duplicate))
            .inc_by(total.saturating_sub(inserted));
    }
}
