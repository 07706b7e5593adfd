//! `vigil export RUN --format parquet`: the CSV's columns with their types
//! (strings, doubles, booleans, integers; one list,
//! `vigil_coordinator::export`), written with the `parquet` crate's
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
use vigil_coordinator::export::{self, Cell, ColumnType, ExportColumns};
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
    fn new(spec: export::Column) -> Column {
        let values = match spec.ty {
            ColumnType::Str => Values::Str(Vec::new()),
            ColumnType::F64 => Values::F64(Vec::new()),
            ColumnType::I64 => Values::I64(Vec::new()),
            ColumnType::I32 => Values::I32(Vec::new()),
            ColumnType::Bool => Values::Bool(Vec::new()),
        };
        Column {
            name: spec.name,
            optional: spec.optional,
            values,
            defs: Vec::new(),
        }
    }

    /// Adds one cell; returns the bytes of text it buffered.
    fn push(&mut self, cell: Cell<'_>) -> usize {
        match cell {
            Cell::Str(v) => return self.str(v),
            Cell::F64(v) => self.f64(v),
            Cell::Bool(v) => self.bool(v),
            Cell::Int(v) => match self.values {
                Values::I32(_) => self.i32(i32::try_from(v).unwrap_or(i32::MAX)),
                _ => self.i64(i64::try_from(v).unwrap_or(i64::MAX)),
            },
        }
        0
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
    schema: ExportColumns,
    columns: Vec<Column>,
    run_id: String,
    rows: usize,
    bytes: usize,
    max_rows: usize,
}

impl<W: Write + Send> ParquetExport<W> {
    /// Starts a file of `run_id`'s item results with the columns of
    /// `schema` (the CSV export's), in row groups of at most `max_rows` rows.
    pub fn new(
        out: W,
        run_id: &str,
        schema: ExportColumns,
        max_rows: usize,
    ) -> anyhow::Result<Self> {
        let columns: Vec<Column> = schema.columns().into_iter().map(Column::new).collect();
        let fields = columns
            .iter()
            .map(|c| c.schema().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let parquet_schema = Type::group_type_builder("vigil_item_result")
            .with_fields(fields)
            .build()?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("vigil {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = SerializedFileWriter::new(out, Arc::new(parquet_schema), Arc::new(props))?;
        Ok(ParquetExport {
            writer,
            schema,
            columns,
            run_id: run_id.to_string(),
            rows: 0,
            bytes: 0,
            max_rows: max_rows.max(1),
        })
    }

    /// Adds one item's row; a full row group is written out.
    pub fn push(&mut self, item: &ItemResult) -> anyhow::Result<()> {
        let row = self.schema.row(&self.run_id, item);
        let mut bytes = 0;
        for (column, cell) in self.columns.iter_mut().zip(row) {
            bytes += column.push(cell);
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
