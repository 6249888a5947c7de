//! Responses recorded by `request_id`, written in the transaction of the change they
//! report, so that a retried request gets the first answer and changes nothing more.
//! Same table and encoding as server-kit's `idempotency` module.

use prost::Message;
use sqlx::AnyConnection;
use switchboard_server_kit::db::now_micros;

use crate::error::Result;

pub(super) async fn lookup<M: Message + Default>(
    conn: &mut AnyConnection,
    tenant_id: &str,
    method: &str,
    request_id: &str,
) -> Result<Option<M>> {
    let row: Option<(Vec<u8>,)> = sqlx::query_as(
        "SELECT response FROM request_log WHERE tenant_id = $1 AND method = $2 AND request_id = $3",
    )
    .bind(tenant_id)
    .bind(method)
    .bind(request_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(bytes,)| M::decode(bytes.as_slice()).map_err(super::corrupt))
        .transpose()
}

pub(super) async fn record<M: Message>(
    conn: &mut AnyConnection,
    tenant_id: &str,
    method: &str,
    request_id: &str,
    response: &M,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO request_log (tenant_id, method, request_id, response, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant_id)
    .bind(method)
    .bind(request_id)
    .bind(response.encode_to_vec())
    .bind(now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
