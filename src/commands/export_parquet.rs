//! `vigil export RUN --format parquet`: the CSV's columns with their types
//! (strings, doubles, booleans, integers), written with the `parquet` crate's
//! column writers (no Arrow), Snappy-compressed.
//!
//! Rows are buffered one row group at a time (`--row-group-rows`, 16384 by
//! default, or fewer once the buffered text passes [`ROW_GROUP_BYTES`]), so
//! the writer's memory is bounded by a row group whatever the run's size.

use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use std::io::Write;
use std::sync::Arc;
use vigil_protocol::ItemResult;

/// A row group is closed early once its buffered strings pass this size.
pub const ROW_GROUP_BYTES: usize = 64 << 20;

/// One column's values of the current row group; `defs` holds a definition
/// level per row (1 present, 0 null) for optional columns.
enum Values {
    Str(Vec<ByteArray>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
}

struct Column {
    name: String,
    optional: bool,
    values: Values,
    defs: Vec<i16>,
}

impl Column {
    fn new(name: impl Into<String>, optional: bool, values: Values) -> Column {
        Column {
            name: name.into(),
            optional,
            values,
            defs: Vec::new(),
        }
    }

    fn schema(&self) -> parquet::errors::Result<Type> {
        let (physical, logical) = match self.values {
            Values::Str(_) => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
            Values::F64(_) => (Physical::DOUBLE, None),
            Values::I64(_) => (Physical::INT64, None),
            Values::I32(_) => (Physical::INT32, None),
            Values::Bool(_) => (Physical::BOOLEAN, None),
        };
        let repetition = if self.optional {
            Repetition::OPTIONAL
        } else {
            Repetition::REQUIRED
        };
        Type::primitive_type_builder(&self.name, physical)
            .with_repetition(repetition)
            .with_logical_type(logical)
            .build()
    }

    fn null(&mut self) {
        debug_assert!(self.optional, "{} is required", self.name);
        self.defs.push(0);
    }

    fn present(&mut self) {
        if self.optional {
            self.defs.push(1);
        }
    }

    fn str(&mut self, v: Option<&str>) -> usize {
        match (v, &mut self.values) {
            (Some(s), Values::Str(out)) => {
                out.push(ByteArray::from(s.as_bytes().to_vec()));
                self.present();
                s.len()
            }
            _ => {
                self.null();
                0
            }
        }
    }

    fn f64(&mut self, v: Option<f64>) {
        match (v, &mut self.values) {
            (Some(x), Values::F64(out)) => {
                out.push(x);
                self.present();
            }
            _ => self.null(),
        }
    }

    fn i64(&mut self, v: i64) {
        if let Values::I64(out) = &mut self.values {
            out.push(v);
            self.present();
        }
    }

    fn i32(&mut self, v: i32) {
        if let Values::I32(out) = &mut self.values {
            out.push(v);
            self.present();
        }
    }

    fn bool(&mut self, v: Option<bool>) {
        match (v, &mut self.values) {
            (Some(b), Values::Bool(out)) => {
                out.push(b);
                self.present();
            }
            _ => self.null(),
        }
    }

    fn clear(&mut self) {
        self.defs.clear();
        match &mut self.values {
            Values::Str(v) => v.clear(),
            Values::F64(v) => v.clear(),
            Values::I64(v) => v.clear(),
            Values::I32(v) => v.clear(),
            Values::Bool(v) => v.clear(),
        }
    }
}

/// A Parquet file of item results being written, one row group at a time.
pub struct ParquetExport<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    columns: Vec<Column>,
    tags: Vec<String>,
    scorers: Vec<String>,
    run_id: String,
    rows: usize,
    bytes: usize,
    max_rows: usize,
}

impl<W: Write + Send> ParquetExport<W> {
    /// Starts a file of `run_id`'s item results with one `tag.<key>` column
    /// per tag and `<scorer>.value` (double) and `<scorer>.passed` (boolean)
    /// columns per scorer, after the fixed columns (as in the CSV export),
    /// in row groups of at most `max_rows` rows.
    pub fn new(
        out: W,
        run_id: &str,
        tags: Vec<String>,
        scorers: Vec<String>,
        max_rows: usize,
    ) -> anyhow::Result<Self> {
        let s = || Values::Str(Vec::new());
        let mut columns = vec![
            Column::new("run_id", false, s()),
            Column::new("index", false, Values::I64(Vec::new())),
            Column::new("id", false, s()),
            Column::new("error_kind", true, s()),
            Column::new("error_message", true, s()),
            Column::new("latency_ms", false, Values::F64(Vec::new())),
            Column::new("cached", false, Values::Bool(Vec::new())),
            Column::new("attempts", false, Values::I32(Vec::new())),
            Column::new("response_model", true, s()),
            Column::new("finish_reason", true, s()),
            Column::new("input_tokens", false, Values::I64(Vec::new())),
            Column::new("output_tokens", false, Values::I64(Vec::new())),
            Column::new("output", true, s()),
        ];
        columns.extend(
            tags.iter()
                .map(|t| Column::new(format!("tag.{t}"), true, s())),
        );
        for name in &scorers {
            columns.push(Column::new(
                format!("{name}.value"),
                true,
                Values::F64(Vec::new()),
            ));
            columns.push(Column::new(
                format!("{name}.passed"),
                true,
                Values::Bool(Vec::new()),
            ));
        }
        let fields = columns
            .iter()
            .map(|c| c.schema().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let schema = Type::group_type_builder("vigil_item_result")
            .with_fields(fields)
            .build()?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("vigil {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))?;
        Ok(ParquetExport {
            writer,
            columns,
            tags,
            scorers,
            run_id: run_id.to_string(),
            rows: 0,
            bytes: 0,
            max_rows: max_rows.max(1),
        })
    }

    /// Adds one item's row; a full row group is written out.
    pub fn push(&mut self, item: &ItemResult) -> anyhow::Result<()> {
        let c = &mut self.columns;
        let mut bytes = c[0].str(Some(&self.run_id));
        c[1].i64(item.index as i64);
        bytes += c[2].str(Some(&item.id));
        c[3].str(item.error.as_ref().map(|e| e.kind.as_str()));
        bytes += c[4].str(item.error.as_ref().map(|e| e.message.as_str()));
        c[5].f64(Some(item.latency_ms));
        c[6].bool(Some(item.cached));
        c[7].i32(i32::try_from(item.attempts).unwrap_or(i32::MAX));
        c[8].str(item.response_model.as_deref());
        c[9].str(item.finish_reason.as_deref());
        c[10].i64(i64::try_from(item.usage.input).unwrap_or(i64::MAX));
        c[11].i64(i64::try_from(item.usage.output).unwrap_or(i64::MAX));
        bytes += c[12].str(item.output.as_deref());
        let mut at = 13;
        for tag in &self.tags {
            bytes += c[at].str(item.tags.get(tag).map(String::as_str));
            at += 1;
        }
        for name in &self.scorers {
            let score = item.scores.iter().find(|s| &s.scorer == name);
            c[at].f64(score.map(|s| s.value));
            c[at + 1].bool(score.map(|s| s.passed));
            at += 2;
        }
        self.rows += 1;
        self.bytes += bytes;
        if self.rows >= self.max_rows || self.bytes >= ROW_GROUP_BYTES {
            self.flush_row_group()?;
        }
        Ok(())
    }

    fn flush_row_group(&mut self) -> anyhow::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        for column in &mut self.columns {
            let mut writer = group
                .next_column()?
                .ok_or_else(|| anyhow::anyhow!("parquet schema has fewer columns"))?;
            let defs = column.optional.then_some(column.defs.as_slice());
            match &column.values {
                Values::Str(v) => writer.typed::<ByteArrayType>().write_batch(v, defs, None)?,
                Values::F64(v) => writer.typed::<DoubleType>().write_batch(v, defs, None)?,
                Values::I64(v) => writer.typed::<Int64Type>().write_batch(v, defs, None)?,
                Values::I32(v) => writer.typed::<Int32Type>().write_batch(v, defs, None)?,
                Values::Bool(v) => writer.typed::<BoolType>().write_batch(v, defs, None)?,
            };
            writer.close()?;
            column.clear();
        }
        group.close()?;
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }

    /// Writes the last row group and the footer; returns the writer.
    pub fn finish(mut self) -> anyhow::Result<W> {
        self.flush_row_group()?;
        Ok(self.writer.into_inner()?)
    }
}
