//! Streaming JSONL and CSV readers.

use std::io::Write;
use std::path::Path;
use vigil_coordinator::dataset::{self, DatasetError, Record};
use vigil_coordinator::suite::{DatasetFormat, DatasetSpec};

fn spec(path: &Path, format: DatasetFormat) -> DatasetSpec {
    DatasetSpec {
        path: path.to_path_buf(),
        format,
        id_field: None,
        tags: vec![],
        named: None,
    }
}

fn read_all(path: &Path, format: DatasetFormat) -> Result<Vec<Record>, DatasetError> {
    dataset::open(&spec(path, format))?.collect()
}

#[test]
fn jsonl_skips_blank_lines_and_numbers_lines_and_items() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.jsonl");
    std::fs::write(
        &p,
        "\u{feff}{\"a\": 1}\n\n   \r\n{\"a\": 2, \"b\": [1, 2]}\r\n{\"a\": 3}",
    )
    .unwrap();
    let recs = read_all(&p, DatasetFormat::Jsonl).unwrap();
    let pos: Vec<(u64, u64)> = recs.iter().map(|r| (r.line, r.index)).collect();
    assert_eq!(pos, vec![(1, 0), (4, 1), (5, 2)]);
    assert_eq!(recs[0].fields["a"], 1);
    assert_eq!(recs[1].fields["b"][1], 2);
}

#[test]
fn malformed_jsonl_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("arith.jsonl");
    let mut text = String::new();
    for i in 0..16 {
        text.push_str(&format!("{{\"id\": {i}}}\n"));
    }
    text.push_str("{\"id\": 16 \"q\": 1}\n{\"id\": 17}\n");
    std::fs::write(&p, text).unwrap();
    let mut records = dataset::open(&spec(&p, DatasetFormat::Jsonl)).unwrap();
    for _ in 0..16 {
        records.next().unwrap().unwrap();
    }
    let err = records.next().unwrap().unwrap_err();
    assert_eq!(err.line(), Some(17));
    assert_eq!(
        err.to_string(),
        format!(
            "{}:17: invalid JSON: expected `,` or `}}` at column 11",
            p.display()
        )
    );
    // A malformed line ends the stream.
    assert!(records.next().is_none());
}

#[test]
fn non_object_line_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.jsonl");
    std::fs::write(&p, "{\"a\": 1}\n[1, 2]\n").unwrap();
    let err = read_all(&p, DatasetFormat::Jsonl).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}:2: expected a JSON object, found an array", p.display())
    );
}

#[test]
fn invalid_utf8_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.jsonl");
    std::fs::write(&p, b"{\"a\": \"\xff\"}\n").unwrap();
    let err = read_all(&p, DatasetFormat::Jsonl).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}:1: invalid JSON", p.display())),
        "{err}"
    );
}

#[test]
fn missing_file_names_the_file() {
    let err = read_all(Path::new("/no/such/data.jsonl"), DatasetFormat::Jsonl).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/no/such/data.jsonl: cannot open dataset:"),
        "{err}"
    );
    let err = read_all(Path::new("/no/such/data.csv"), DatasetFormat::Csv).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/no/such/data.csv: cannot open dataset:"),
        "{err}"
    );
}

#[test]
fn csv_reads_header_and_string_values_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.csv");
    std::fs::write(
        &p,
        "\u{feff}id,question,answer\nq1,\"What is 1, plus 1?\",2\nq2,\"multi\nline\",3\nq3,x,007\n",
    )
    .unwrap();
    let recs = read_all(&p, DatasetFormat::Csv).unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].fields["id"], "q1");
    assert_eq!(recs[0].fields["question"], "What is 1, plus 1?");
    assert_eq!(recs[1].fields["question"], "multi\nline");
    assert_eq!(recs[2].fields["answer"], "007");
    let pos: Vec<(u64, u64)> = recs.iter().map(|r| (r.line, r.index)).collect();
    assert_eq!(pos, vec![(2, 0), (3, 1), (5, 2)]);
}

#[test]
fn csv_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.csv");
    std::fs::write(&p, "a,b\n1,2\n3\n").unwrap();
    let err = read_all(&p, DatasetFormat::Csv).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: record has 1 fields, but the header row has 2",
            p.display()
        )
    );
    std::fs::write(&p, "a,a\n1,2\n").unwrap();
    let err = read_all(&p, DatasetFormat::Csv).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}:1: duplicate column `a` in the header row", p.display())
    );
}

#[test]
fn sha256_covers_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.jsonl");
    let bytes = b"{\"a\": 1}\n\n{\"a\": 2}\n\n\n";
    std::fs::write(&p, bytes).unwrap();
    let mut recs = dataset::open(&spec(&p, DatasetFormat::Jsonl)).unwrap();
    assert_eq!(recs.by_ref().count(), 2);
    use sha2::Digest;
    assert_eq!(recs.sha256(), hex::encode(sha2::Sha256::digest(bytes)));
    assert_eq!(recs.bytes_read(), bytes.len() as u64);
}

#[test]
fn a_200k_line_file_streams() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    for i in 0..200_000u64 {
        writeln!(
            f,
            "{{\"id\": \"q{i}\", \"question\": \"What is {i} + 1?\", \"answer\": \"{}\"}}",
            i + 1
        )
        .unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let mut n = 0u64;
    let mut last = None;
    for rec in dataset::open(&spec(&p, DatasetFormat::Jsonl)).unwrap() {
        let rec = rec.unwrap();
        assert_eq!(rec.index, n);
        n += 1;
        last = Some(rec);
    }
    assert_eq!(n, 200_000);
    let last = last.unwrap();
    assert_eq!(last.line, 200_000);
    assert_eq!(last.fields["answer"], "200000");
}
