//! Operators: boolean logic, equality, comparison, arithmetic, collections and types.

use serde_json::{Value, json};

use super::{assert_table, eval, eval_bool_with};

const TRUE: &str = "true";
const FALSE: &str = "false";
const EMPTY: &str = "{}";

/// Checks a truth table of `left op right` for every pair of true, false and empty.
fn assert_truth_table(op: &str, table: [[Option<bool>; 3]; 3]) {
    let operands = [TRUE, FALSE, EMPTY];
    for (row, left) in operands.iter().enumerate() {
        for (column, right) in operands.iter().enumerate() {
            let expression = format!("({left}) {op} ({right})");
            assert_eq!(
                eval_bool_with(&expression, &Value::Null, &[]),
                table[row][column],
                "{expression}"
            );
        }
    }
}

const T: Option<bool> = Some(true);
const F: Option<bool> = Some(false);
const E: Option<bool> = None;

#[test]
fn and_truth_table() {
    assert_truth_table("and", [[T, F, E], [F, F, F], [E, F, E]]);
}

#[test]
fn or_truth_table() {
    assert_truth_table("or", [[T, T, T], [T, F, E], [T, E, E]]);
}

#[test]
fn xor_truth_table() {
    assert_truth_table("xor", [[F, T, E], [T, F, E], [E, E, E]]);
}

#[test]
fn implies_truth_table() {
    assert_truth_table("implies", [[T, F, E], [T, T, T], [T, E, E]]);
}

#[test]
fn not_truth_table() {
    assert_eq!(eval_bool_with("true.not()", &Value::Null, &[]), F);
    assert_eq!(eval_bool_with("false.not()", &Value::Null, &[]), T);
    assert_eq!(eval_bool_with("{}.not()", &Value::Null, &[]), E);
}

#[test]
fn logic_skips_right_operand_when_decided() {
    // The right operand would fail (several items where one boolean is expected).
    let resource = json!({"a": [true, false]});
    assert_eq!(eval_bool_with("false and a", &resource, &[]), F);
    assert_eq!(eval_bool_with("true or a", &resource, &[]), T);
    assert_eq!(eval_bool_with("false implies a", &resource, &[]), T);
}

#[test]
fn equality() {
    let resource = json!({
        "a": [1, 2],
        "b": [1, 2],
        "c": [2, 1],
        "s": "Text",
        "o": {"x": [1, {"y": "z"}]},
        "p": {"x": [1.0, {"y": "z"}]}
    });
    let cases = [
        ("1 = 1", vec![json!(true)]),
        ("1 = 1.0", vec![json!(true)]),
        ("1 != 2", vec![json!(true)]),
        ("'a' = 'a'", vec![json!(true)]),
        ("'a' = 'A'", vec![json!(false)]),
        ("'1' = 1", vec![json!(false)]),
        ("true = true", vec![json!(true)]),
        ("a = b", vec![json!(true)]),
        ("a = c", vec![json!(false)]),
        ("a = 1", vec![json!(false)]),
        ("o = p", vec![json!(true)]),
        ("{} = 1", vec![]),
        ("1 != {}", vec![]),
        ("missing = missing", vec![]),
        ("s = 'Text'", vec![json!(true)]),
        ("@2020-01-01 = @2020-01-01", vec![json!(true)]),
        ("@2020-01 = @2020-01-01", vec![]),
        ("@2020-01 = @2020-02-01", vec![json!(false)]),
        (
            "@2020-01-01T10:00:00Z = @2020-01-01T11:00:00+01:00",
            vec![json!(true)],
        ),
        ("@T10:30 = @T10:30:00", vec![]),
        ("@T10:30:00 = @T10:30:00.000", vec![json!(true)]),
    ];
    assert_table(&resource, &cases);
}

#[test]
fn equivalence() {
    let resource = json!({"a": [1, 2], "c": [2, 1]});
    let cases = [
        ("'Hello  World' ~ 'hello world'", vec![json!(true)]),
        ("'a' !~ 'b'", vec![json!(true)]),
        ("a ~ c", vec![json!(true)]),
        ("{} ~ {}", vec![json!(true)]),
        ("{} ~ 1", vec![json!(false)]),
        ("1.1 ~ 1.14", vec![json!(true)]),
        ("@2020 ~ @2020-01", vec![json!(false)]),
        ("@2020-01 ~ @2020-01", vec![json!(true)]),
    ];
    assert_table(&resource, &cases);
}

#[test]
fn comparison() {
    let resource = json!({
        "n": 5,
        "d": "2020-06-15",
        "t": "2020-06-15T10:00:00Z",
        "u": "2020-06-15T12:00:00+02:00"
    });
    let cases = [
        ("1 < 2", vec![json!(true)]),
        ("2 <= 2", vec![json!(true)]),
        ("2.5 > 2", vec![json!(true)]),
        ("n >= 5.0", vec![json!(true)]),
        ("'abc' < 'abd'", vec![json!(true)]),
        ("'b' > 'abc'", vec![json!(true)]),
        ("d > @2020-06-01", vec![json!(true)]),
        ("d < @2020-06", vec![]),
        ("d < @2020-07", vec![json!(true)]),
        ("t > @2020-06-15T09:59:59Z", vec![json!(true)]),
        ("t = u", vec![json!(true)]),
        ("t >= u", vec![json!(true)]),
        ("t < u", vec![json!(false)]),
        ("@2020-06-15T10:00:00Z > @2020-06-15", vec![]),
        ("@T09:00 < @T10:00", vec![json!(true)]),
        ("missing < 1", vec![]),
        ("1 > {}", vec![]),
    ];
    assert_table(&resource, &cases);
}

#[test]
fn arithmetic() {
    let cases = [
        ("1 + 2 * 3", vec![json!(7)]),
        ("(1 + 2) * 3", vec![json!(9)]),
        ("10 - 4 - 3", vec![json!(3)]),
        ("7 / 2", vec![json!(3.5)]),
        ("6 / 3", vec![json!(2.0)]),
        ("7 div 2", vec![json!(3)]),
        ("-7 div 2", vec![json!(-3)]),
        ("7 mod 3", vec![json!(1)]),
        ("5.5 div 0.7", vec![json!(7.0)]),
        ("1 / 0", vec![]),
        ("1 div 0", vec![]),
        ("1 mod 0", vec![]),
        ("1.5 + 1", vec![json!(2.5)]),
        ("-(3)", vec![json!(-3)]),
        ("-1.5", vec![json!(-1.5)]),
        ("+4", vec![json!(4)]),
        ("2 * -3", vec![json!(-6)]),
        ("'a' + 'b'", vec![json!("ab")]),
        ("'a' & 'b'", vec![json!("ab")]),
        ("'a' & {}", vec![json!("a")]),
        ("{} & {}", vec![json!("")]),
        ("'a' + {}", vec![]),
        ("{} * 2", vec![]),
    ];
    assert_table(&Value::Null, &cases);
}

#[test]
fn union_and_membership() {
    let resource = json!({"a": [1, 2, 2], "b": [2, 3], "s": "x"});
    let cases = [
        ("a | b", vec![json!(1), json!(2), json!(3)]),
        ("a | {}", vec![json!(1), json!(2)]),
        ("{} | {}", vec![]),
        ("1 | 1.0", vec![json!(1)]),
        ("2 in a", vec![json!(true)]),
        ("5 in a", vec![json!(false)]),
        ("{} in a", vec![]),
        ("1 in {}", vec![json!(false)]),
        ("a contains 3", vec![json!(false)]),
        ("b contains 3", vec![json!(true)]),
        ("b contains {}", vec![]),
        ("s in ('x' | 'y')", vec![json!(true)]),
    ];
    assert_table(&resource, &cases);
}

#[test]
fn type_operators() {
    let resource = json!({
        "resourceType": "Patient",
        "active": true,
        "multipleBirthInteger": 2,
        "name": [{"family": "F"}]
    });
    let cases = [
        ("active is Boolean", vec![json!(true)]),
        ("active is boolean", vec![json!(true)]),
        ("active is System.Boolean", vec![json!(true)]),
        ("active is String", vec![json!(false)]),
        ("multipleBirth is integer", vec![json!(true)]),
        ("multipleBirth is FHIR.integer", vec![json!(true)]),
        ("multipleBirth as boolean", vec![]),
        ("multipleBirth.as(integer)", vec![json!(2)]),
        ("name.family is string", vec![json!(true)]),
        ("$this is Patient", vec![json!(true)]),
        ("$this is FHIR.Patient", vec![json!(true)]),
        ("$this is DomainResource", vec![json!(true)]),
        ("$this is Observation", vec![json!(false)]),
        ("missing is Patient", vec![]),
        ("1 is Integer", vec![json!(true)]),
        ("1.5 is Decimal", vec![json!(true)]),
        ("'x' is String", vec![json!(true)]),
        ("@2020 is Date", vec![json!(true)]),
        ("@2020T is DateTime", vec![json!(true)]),
        ("@T10:00 is Time", vec![json!(true)]),
        ("is(Patient)", vec![json!(true)]),
        ("(1 | 'a' | 2).ofType(Integer)", vec![json!(1), json!(2)]),
    ];
    assert_table(&resource, &cases);
}

#[test]
fn indexer() {
    let resource = json!({"a": [10, 20, 30]});
    let cases = [
        ("a[0]", vec![json!(10)]),
        ("a[2]", vec![json!(30)]),
        ("a[3]", vec![]),
        ("a[-1]", vec![]),
        ("a[1 + 1]", vec![json!(30)]),
        ("a[{}]", vec![]),
        ("(a | a)[1]", vec![json!(20)]),
    ];
    assert_table(&resource, &cases);
}

#[test]
fn literals() {
    let cases = [
        ("'it\\'s'", vec![json!("it's")]),
        ("'\\u00e9\\t'", vec![json!("é\t")]),
        ("42", vec![json!(42)]),
        ("4.50", vec![json!(4.5)]),
        ("true", vec![json!(true)]),
        ("{}", vec![]),
        ("@2020-01-15", vec![json!("2020-01-15")]),
        ("@2020-01-15T", vec![json!("2020-01-15")]),
        (
            "@2020-01-15T10:30:00.250+05:30",
            vec![json!("2020-01-15T10:30:00.250+05:30")],
        ),
        ("@T10:30", vec![json!("10:30")]),
        ("%ucum", vec![json!("http://unitsofmeasure.org")]),
        ("%sct", vec![json!("http://snomed.info/sct")]),
        ("%loinc", vec![json!("http://loinc.org")]),
        ("%`ucum`", vec![json!("http://unitsofmeasure.org")]),
        ("1 // comment", vec![json!(1)]),
        ("/* block */ 2", vec![json!(2)]),
    ];
    assert_table(&Value::Null, &cases);
}

#[test]
fn variables_as_collections() {
    let pairs = [("list", json!([1, null, 2])), ("none", Value::Null)];
    assert_eq!(
        super::eval_with("%list.count()", &Value::Null, &pairs),
        vec![json!(2)]
    );
    assert_eq!(
        super::eval_with("%none.exists()", &Value::Null, &pairs),
        vec![json!(false)]
    );
    assert_eq!(eval("%resource.count()", &Value::Null), vec![json!(0)]);
}
