//! The `--where` filter of `vigil dataset promote`: a small expression
//! language over a capture's fields, its metadata and its online scores.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | compare
//! compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand)?
//! operand := FIELD | STRING | NUMBER | "true" | "false" | "(" expr ")"
//! ```
//!
//! Fields: `model`, `app`, `endpoint`, `prompt`, `response`, `error`,
//! `capture_id`, `request_id` (strings); `status`, `latency_ms`,
//! `input_tokens`, `output_tokens` (numbers); `stream`, `scored` (booleans);
//! `metadata.<key>` (string); `<scorer>.value` (number), `<scorer>.passed`
//! (boolean), `<scorer>.detail` and `<scorer>.label` (strings), from the
//! monitor runs that scored the capture. A comparison is between a field and
//! a literal of the field's type (strings: `==`, `!=` only; booleans too); a
//! boolean field stands alone as well (`not json_valid.passed`).
//!
//! A field the capture does not have (no such metadata key, a scorer that
//! did not score it, no response) is *unknown*, and so is every comparison
//! with it; `and`/`or`/`not` follow three-valued logic (`false and unknown`
//! is false, `true or unknown` is true, `not unknown` is unknown), and only
//! captures for which the whole filter is true are selected.
//!
//! ```
//! use vigil_coordinator::promote::filter::Filter;
//! let f = Filter::parse(r#"judge.value < 0.5 and model == "llama-3.1-8b""#).unwrap();
//! assert_eq!(f.scorers(), ["judge"]);
//! let e = Filter::parse("model == 3").unwrap_err();
//! assert_eq!(e.column, 10);
//! ```

use std::collections::BTreeSet;

/// A `--where` expression that does not parse or type-check.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct FilterError {
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl FilterError {
    /// The error with the expression and a caret under the column, for a terminal.
    pub fn display_with(&self, source: &str) -> String {
        format!(
            "--where: {self}\n  {source}\n  {}^",
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

/// A value of a field, as the filter sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val<'a> {
    /// A string.
    Str(&'a str),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
}

/// A field of the filter language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A capture field without a prefix (`model`, `status`, ...).
    Capture(&'static str),
    /// `metadata.<key>`.
    Metadata(String),
    /// `<scorer>.<attribute>`: `value`, `passed`, `detail` or `label`.
    Score(String, &'static str),
}

/// What a row of the filter gives: a field's value, `None` when unknown.
pub trait Row {
    /// The field's value.
    fn get(&self, field: &Field) -> Option<Val<'_>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Str,
    Num,
    Bool,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Str => "a string",
            Type::Num => "a number",
            Type::Bool => "a boolean",
        }
    }
}

/// The capture fields without a prefix, with their types.
const CAPTURE_FIELDS: &[(&str, Type)] = &[
    ("model", Type::Str),
    ("app", Type::Str),
    ("endpoint", Type::Str),
    ("prompt", Type::Str),
    ("response", Type::Str),
    ("error", Type::Str),
    ("capture_id", Type::Str),
    ("request_id", Type::Str),
    ("status", Type::Num),
    ("latency_ms", Type::Num),
    ("input_tokens", Type::Num),
    ("output_tokens", Type::Num),
    ("stream", Type::Bool),
    ("scored", Type::Bool),
];

const SCORE_ATTRIBUTES: &[(&str, Type)] = &[
    ("value", Type::Num),
    ("passed", Type::Bool),
    ("detail", Type::Str),
    ("label", Type::Str),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
    /// `a op b` == `b flipped a`.
    fn flipped(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            other => other,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl Literal {
    fn ty(&self) -> Type {
        match self {
            Literal::Str(_) => Type::Str,
            Literal::Num(_) => Type::Num,
            Literal::Bool(_) => Type::Bool,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `field op literal`.
    Compare(Field, Op, Literal),
    /// A boolean field standing alone.
    Is(Field),
    /// A constant (`true`, `false`).
    Const(bool),
}

/// A parsed, type-checked `--where` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
    scorers: BTreeSet<String>,
}

impl Filter {
    /// Parses and type-checks an expression.
    pub fn parse(source: &str) -> Result<Filter, FilterError> {
        let tokens = lex(source)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            end: source.chars().count() + 1,
            scorers: BTreeSet::new(),
        };
        let expr = p.or()?;
        if let Some(t) = p.peek() {
            return Err(FilterError {
                column: t.column,
                message: format!(
                    "unexpected {}; expected `and`, `or` or the end",
                    t.kind.describe()
                ),
            });
        }
        Ok(Filter {
            expr,
            scorers: p.scorers,
        })
    }

    /// The scorers the expression reads (`<scorer>.value`, ...), sorted.
    pub fn scorers(&self) -> Vec<&str> {
        self.scorers.iter().map(String::as_str).collect()
    }

    /// Whether the row is selected: the expression is true (not false, not unknown).
    pub fn matches(&self, row: &impl Row) -> bool {
        eval(&self.expr, row) == Some(true)
    }
}

fn eval(expr: &Expr, row: &impl Row) -> Option<bool> {
    match expr {
        Expr::And(a, b) => match (eval(a, row), eval(b, row)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (eval(a, row), eval(b, row)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::Not(a) => eval(a, row).map(|v| !v),
        Expr::Const(v) => Some(*v),
        Expr::Is(field) => match row.get(field)? {
            Val::Bool(b) => Some(b),
            _ => None,
        },
        Expr::Compare(field, op, lit) => {
            let ord = match (row.get(field)?, lit) {
                (Val::Str(a), Literal::Str(b)) => a.cmp(b.as_str()),
                (Val::Bool(a), Literal::Bool(b)) => a.cmp(b),
                (Val::Num(a), Literal::Num(b)) => a.partial_cmp(b)?,
                _ => return None,
            };
            Some(match op {
                Op::Eq => ord.is_eq(),
                Op::Ne => ord.is_ne(),
                Op::Lt => ord.is_lt(),
                Op::Le => ord.is_le(),
                Op::Gt => ord.is_gt(),
                Op::Ge => ord.is_ge(),
            })
        }
    }
}

// ------------------------------------------------------------------ lexer

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Path(String),
    Str(String),
    Num(f64),
    Op(Op),
    And,
    Or,
    Not,
    True,
    False,
    Open,
    Close,
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Path(p) => format!("`{p}`"),
            Kind::Str(s) => format!("string {s:?}"),
            Kind::Num(n) => format!("number {n}"),
            Kind::Op(op) => format!("`{}`", op.text()),
            Kind::And => "`and`".into(),
            Kind::Or => "`or`".into(),
            Kind::Not => "`not`".into(),
            Kind::True => "`true`".into(),
            Kind::False => "`false`".into(),
            Kind::Open => "`(`".into(),
            Kind::Close => "`)`".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: Kind,
    /// 1-based character column.
    column: usize,
}

fn lex(source: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |column: usize, message: String| FilterError { column, message };
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let kind = match c {
            '(' => Kind::Open,
            ')' => Kind::Close,
            '"' | '\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(column, "unterminated string".into())),
                        Some(&q) if q == c => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => text.push('\n'),
                                Some('t') => text.push('\t'),
                                Some(&e @ ('\\' | '"' | '\'')) => text.push(e),
                                _ => {
                                    return Err(err(
                                        i + 1,
                                        "unknown escape (use \\\\, \\\", \\', \\n or \\t)".into(),
                                    ));
                                }
                            }
                        }
                        Some(&ch) => text.push(ch),
                    }
                    i += 1;
                }
                Kind::Str(text)
            }
            _ if two == "==" || two == "!=" || two == "<=" || two == ">=" => {
                i += 1;
                Kind::Op(match two.as_str() {
                    "==" => Op::Eq,
                    "!=" => Op::Ne,
                    "<=" => Op::Le,
                    _ => Op::Ge,
                })
            }
            '<' => Kind::Op(Op::Lt),
            '>' => Kind::Op(Op::Gt),
            '=' => return Err(err(column, "`=` is not an operator; use `==`".into())),
            '&' | '|' | '!' => {
                return Err(err(
                    column,
                    format!("`{c}` is not an operator; use `and`, `or`, `not` (and `!=`)"),
                ));
            }
            _ if c.is_ascii_digit() || c == '-' || c == '.' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric()
                        || matches!(chars[i + 1], '.' | '-' | '+')
                            && matches!(chars[i], 'e' | 'E' | '0'..='9' | '.'))
                {
                    i += 1;
                }
                let text: String = chars[start..=i].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => Kind::Num(n),
                    _ => return Err(err(column, format!("`{text}` is not a number"))),
                }
            }
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_alphanumeric() || matches!(chars[i + 1], '_' | '-' | '.'))
                {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                match word.as_str() {
                    "and" => Kind::And,
                    "or" => Kind::Or,
                    "not" => Kind::Not,
                    "true" => Kind::True,
                    "false" => Kind::False,
                    _ => Kind::Path(word),
                }
            }
            _ => return Err(err(column, format!("unexpected character `{c}`"))),
        };
        out.push(Token { kind, column });
        i += 1;
    }
    Ok(out)
}

// ----------------------------------------------------------------- parser

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// The column just past the end (for "expected ... at the end").
    end: usize,
    scorers: BTreeSet<String>,
}

/// An operand: a field (with its type), a literal, or a parenthesised expression.
enum Operand {
    Field(Field, Type, usize),
    Literal(Literal, usize),
    Expr(Expr),
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.peek().is_some_and(|t| t.kind == Kind::Or) {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.not()?;
        while self.peek().is_some_and(|t| t.kind == Kind::And) {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, FilterError> {
        if self.peek().is_some_and(|t| t.kind == Kind::Not) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, FilterError> {
        let left = self.operand()?;
        let op = match self.peek() {
            Some(Token {
                kind: Kind::Op(op), ..
            }) => *op,
            _ => return self.condition(left),
        };
        let op_column = self.next().map_or(self.end, |t| t.column);
        let right = self.operand()?;
        let (field, ty, lit, lit_column, op) = match (left, right) {
            (Operand::Field(f, ty, _), Operand::Literal(l, c)) => (f, ty, l, c, op),
            (Operand::Literal(l, c), Operand::Field(f, ty, _)) => (f, ty, l, c, op.flipped()),
            (Operand::Field(_, _, _), Operand::Field(_, _, c)) => {
                return Err(FilterError {
                    column: c,
                    message: "compare a field with a literal (a string, number or boolean), not with another field".into(),
                });
            }
            _ => {
                return Err(FilterError {
                    column: op_column,
                    message: format!("`{}` needs a field on one side", op.text()),
                });
            }
        };
        if lit.ty() != ty {
            let example = match ty {
                Type::Str => "a string literal such as \"llama-3.1-8b\"",
                Type::Num => "a number such as 0.5",
                Type::Bool => "`true` or `false`",
            };
            return Err(FilterError {
                column: lit_column,
                message: format!(
                    "{} is {}; compare it with {example}",
                    field_text(&field),
                    ty.name()
                ),
            });
        }
        if ty != Type::Num && !matches!(op, Op::Eq | Op::Ne) {
            return Err(FilterError {
                column: op_column,
                message: format!(
                    "`{}` compares numbers; {} is {} (use `==` or `!=`)",
                    op.text(),
                    field_text(&field),
                    ty.name()
                ),
            });
        }
        Ok(Expr::Compare(field, op, lit))
    }

    /// An operand without an operator after it: must be a condition.
    fn condition(&mut self, operand: Operand) -> Result<Expr, FilterError> {
        match operand {
            Operand::Expr(e) => Ok(e),
            Operand::Literal(Literal::Bool(b), _) => Ok(Expr::Const(b)),
            Operand::Field(f, Type::Bool, _) => Ok(Expr::Is(f)),
            Operand::Field(f, ty, column) => Err(FilterError {
                column,
                message: format!(
                    "{} is {}, not a condition; compare it (e.g. `{} == ...`)",
                    field_text(&f),
                    ty.name(),
                    field_text(&f).trim_matches('`')
                ),
            }),
            Operand::Literal(_, column) => Err(FilterError {
                column,
                message: "a literal alone is not a condition; compare a field with it".into(),
            }),
        }
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        let Some(t) = self.next() else {
            return Err(FilterError {
                column: self.end,
                message: "expected a field, a literal or `(` at the end".into(),
            });
        };
        Ok(match t.kind {
            Kind::Open => {
                let e = self.or()?;
                match self.next() {
                    Some(Token {
                        kind: Kind::Close, ..
                    }) => Operand::Expr(e),
                    Some(other) => {
                        return Err(FilterError {
                            column: other.column,
                            message: format!(
                                "expected `)` (for the `(` at column {}), found {}",
                                t.column,
                                other.kind.describe()
                            ),
                        });
                    }
                    None => {
                        return Err(FilterError {
                            column: self.end,
                            message: format!(
                                "expected `)` (for the `(` at column {}) at the end",
                                t.column
                            ),
                        });
                    }
                }
            }
            Kind::Str(s) => Operand::Literal(Literal::Str(s), t.column),
            Kind::Num(n) => Operand::Literal(Literal::Num(n), t.column),
            Kind::True => Operand::Literal(Literal::Bool(true), t.column),
            Kind::False => Operand::Literal(Literal::Bool(false), t.column),
            Kind::Path(p) => {
                let (field, ty) = self.field(&p, t.column)?;
                Operand::Field(field, ty, t.column)
            }
            other => {
                return Err(FilterError {
                    column: t.column,
                    message: format!(
                        "expected a field, a literal or `(`, found {}",
                        other.describe()
                    ),
                });
            }
        })
    }

    fn field(&mut self, path: &str, column: usize) -> Result<(Field, Type), FilterError> {
        let unknown = || FilterError {
            column,
            message: format!(
                "unknown field `{path}`; fields: {}, metadata.<key>, <scorer>.value|passed|detail|label",
                CAPTURE_FIELDS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let parts: Vec<&str> = path.split('.').collect();
        match parts.as_slice() {
            [name] => CAPTURE_FIELDS
                .iter()
                .find(|(n, _)| n == name)
                .map(|(n, ty)| (Field::Capture(n), *ty))
                .ok_or_else(unknown),
            ["metadata", key] if !key.is_empty() => {
                Ok((Field::Metadata((*key).to_string()), Type::Str))
            }
            [scorer, attr] if !scorer.is_empty() => {
                let (a, ty) = SCORE_ATTRIBUTES
                    .iter()
                    .find(|(a, _)| a == attr)
                    .ok_or_else(unknown)?;
                self.scorers.insert((*scorer).to_string());
                Ok((Field::Score((*scorer).to_string(), a), *ty))
            }
            _ => Err(unknown()),
        }
    }
}

fn field_text(f: &Field) -> String {
    match f {
        Field::Capture(n) => format!("`{n}`"),
        Field::Metadata(k) => format!("`metadata.{k}`"),
        Field::Score(s, a) => format!("`{s}.{a}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<String, Val<'static>>);

    impl Row for Map {
        fn get(&self, field: &Field) -> Option<Val<'_>> {
            let key = field_text(field).trim_matches('`').to_string();
            self.0.get(&key).copied()
        }
    }

    fn row(pairs: &[(&str, Val<'static>)]) -> Map {
        Map(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    #[test]
    fn the_issues_examples_select_what_they_say() {
        let f = Filter::parse("json_valid.passed == false").unwrap();
        assert!(f.matches(&row(&[("json_valid.passed", Val::Bool(false))])));
        assert!(!f.matches(&row(&[("json_valid.passed", Val::Bool(true))])));
        assert!(!f.matches(&row(&[])), "unscored: unknown, not selected");

        let f = Filter::parse(r#"judge.value < 0.5 and model == "llama-3.1-8b""#).unwrap();
        let llama = |v| {
            row(&[
                ("judge.value", Val::Num(v)),
                ("model", Val::Str("llama-3.1-8b")),
            ])
        };
        assert!(f.matches(&llama(0.2)));
        assert!(!f.matches(&llama(0.5)));
        assert!(!f.matches(&row(&[
            ("judge.value", Val::Num(0.1)),
            ("model", Val::Str("qwen"))
        ])));
    }

    #[test]
    fn precedence_parentheses_not_and_flipped_comparisons() {
        // and binds tighter than or.
        let f = Filter::parse("a.passed or b.passed and c.passed").unwrap();
        let r = row(&[
            ("a.passed", Val::Bool(true)),
            ("b.passed", Val::Bool(false)),
            ("c.passed", Val::Bool(false)),
        ]);
        assert!(f.matches(&r));
        let f = Filter::parse("(a.passed or b.passed) and c.passed").unwrap();
        assert!(!f.matches(&r));
        let f = Filter::parse("not not a.passed and 0.5 > a.value").unwrap();
        assert!(f.matches(&row(&[
            ("a.passed", Val::Bool(true)),
            ("a.value", Val::Num(0.25))
        ])));
        let f = Filter::parse("status >= 500 or metadata.tier != 'free'").unwrap();
        assert!(f.matches(&row(&[("status", Val::Num(502.0))])));
        assert!(f.matches(&row(&[
            ("status", Val::Num(200.0)),
            ("metadata.tier", Val::Str("pro"))
        ])));
        assert!(!f.matches(&row(&[
            ("status", Val::Num(200.0)),
            ("metadata.tier", Val::Str("free"))
        ])));
        assert_eq!(
            Filter::parse("x.value > 1 or y.passed or model == \"m\"")
                .unwrap()
                .scorers(),
            ["x", "y"]
        );
    }

    #[test]
    fn unknown_follows_three_valued_logic() {
        let r = row(&[("a.passed", Val::Bool(true))]);
        // b is unknown.
        assert!(Filter::parse("a.passed or b.passed").unwrap().matches(&r));
        assert!(!Filter::parse("a.passed and b.passed").unwrap().matches(&r));
        assert!(!Filter::parse("not b.passed").unwrap().matches(&r));
        assert!(!Filter::parse("not (b.value < 0.5)").unwrap().matches(&r));
        assert!(
            Filter::parse("not (false and b.passed)")
                .unwrap()
                .matches(&r)
        );
    }

    #[test]
    fn errors_point_at_the_column() {
        let cases = [
            ("model == 3", 10, "`model` is a string"),
            ("judge.value < \"x\"", 15, "`judge.value` is a number"),
            ("model < \"a\"", 7, "`<` compares numbers"),
            ("modle == \"a\"", 1, "unknown field `modle`"),
            ("judge.score < 1", 1, "unknown field `judge.score`"),
            ("a.passed and", 13, "at the end"),
            ("(a.passed", 10, "expected `)`"),
            ("a.passed b.passed", 10, "unexpected `b.passed`"),
            ("model = \"a\"", 7, "use `==`"),
            ("a.passed && b.passed", 10, "use `and`"),
            ("model == \"abc", 10, "unterminated string"),
            ("latency_ms", 1, "not a condition"),
            ("x.value > 1e", 11, "not a number"),
            ("a.value == b.value", 12, "not with another field"),
            ("é", 1, "unknown field"),
        ];
        for (source, column, needle) in cases {
            let e = Filter::parse(source).expect_err(source);
            assert_eq!(e.column, column, "{source}: {e}");
            assert!(e.message.contains(needle), "{source}: {e}");
        }
        let shown = Filter::parse("model == 3")
            .unwrap_err()
            .display_with("model == 3");
        assert!(shown.ends_with("  model == 3\n           ^"), "{shown}");
    }
}
