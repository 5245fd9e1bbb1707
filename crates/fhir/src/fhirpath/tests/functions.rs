//! Functions on collections, strings, numbers and FHIR elements.

use serde_json::{Value, json};

use super::assert_table;

fn resource() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "active": true,
        "flags": [true, false, true],
        "numbers": [3, 1, 2, 3],
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]}
        ],
        "contact": [
            {"name": {"given": ["A"]}, "contact": [{"name": {"given": ["B"]}}]}
        ],
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://example.org/time", "valueTime": "14:35"}]}
    })
}

#[test]
fn existence_functions() {
    let cases = [
        ("name.exists()", vec![json!(true)]),
        ("missing.exists()", vec![json!(false)]),
        ("name.exists(use = 'usual')", vec![json!(true)]),
        ("name.exists(use = 'temp')", vec![json!(false)]),
        ("name.empty()", vec![json!(false)]),
        ("missing.empty()", vec![json!(true)]),
        ("name.all(given.exists())", vec![json!(true)]),
        ("name.all(family.exists())", vec![json!(false)]),
        ("missing.all(false)", vec![json!(true)]),
        ("flags.allTrue()", vec![json!(false)]),
        ("flags.anyTrue()", vec![json!(true)]),
        ("flags.allFalse()", vec![json!(false)]),
        ("flags.anyFalse()", vec![json!(true)]),
        ("missing.allTrue()", vec![json!(true)]),
        ("missing.anyTrue()", vec![json!(false)]),
        ("(1 | 2).subsetOf(numbers)", vec![json!(true)]),
        ("numbers.subsetOf(1 | 2)", vec![json!(false)]),
        ("numbers.supersetOf(1 | 2)", vec![json!(true)]),
        ("name.given.count()", vec![json!(3)]),
        ("missing.count()", vec![json!(0)]),
        ("numbers.distinct()", vec![json!(3), json!(1), json!(2)]),
        ("numbers.isDistinct()", vec![json!(false)]),
        ("name.given.isDistinct()", vec![json!(true)]),
    ];
    assert_table(&resource(), &cases);
}

#[test]
fn filtering_functions() {
    let cases = [
        (
            "name.where(use = 'official').family",
            vec![json!("Chalmers")],
        ),
        ("name.where(given = 'Jim').use", vec![json!("usual")]),
        ("name.where(family).use", vec![json!("official")]),
        ("numbers.where($this > 2)", vec![json!(3), json!(3)]),
        ("numbers.where($index = 1)", vec![json!(1)]),
        (
            "name.select(given.first())",
            vec![json!("Peter"), json!("Jim")],
        ),
        (
            "name.select(use | given)",
            vec![
                json!("official"),
                json!("Peter"),
                json!("James"),
                json!("usual"),
                json!("Jim"),
            ],
        ),
        (
            "numbers.select($this * 2)",
            vec![json!(6), json!(2), json!(4), json!(6)],
        ),
        ("contact.repeat(contact).name.given", vec![json!("B")]),
        (
            "contact.repeat(contact | name).given",
            vec![json!("A"), json!("B")],
        ),
        ("numbers.ofType(Integer).count()", vec![json!(4)]),
    ];
    assert_table(&resource(), &cases);
}

#[test]
fn subsetting_functions() {
    let cases = [
        ("numbers.first()", vec![json!(3)]),
        ("numbers.last()", vec![json!(3)]),
        ("numbers.tail()", vec![json!(1), json!(2), json!(3)]),
        ("numbers.skip(2)", vec![json!(2), json!(3)]),
        ("numbers.skip(-1).count()", vec![json!(4)]),
        ("numbers.take(2)", vec![json!(3), json!(1)]),
        ("numbers.take(0)", vec![]),
        ("name.family.single()", vec![json!("Chalmers")]),
        ("missing.single()", vec![]),
        ("missing.first()", vec![]),
        ("numbers.intersect(1 | 3 | 5)", vec![json!(3), json!(1)]),
        ("numbers.exclude(3)", vec![json!(1), json!(2)]),
    ];
    assert_table(&resource(), &cases);
}

#[test]
fn combining_functions() {
    let cases = [
        (
            "numbers.union(4 | 1)",
            vec![json!(3), json!(1), json!(2), json!(4)],
        ),
        (
            "(1 | 2).combine(2 | 3)",
            vec![json!(1), json!(2), json!(2), json!(3)],
        ),
        (
            "name.select(use.union(given))",
            vec![
                json!("official"),
                json!("Peter"),
                json!("James"),
                json!("usual"),
                json!("Jim"),
            ],
        ),
    ];
    assert_table(&resource(), &cases);
}

#[test]
fn iif_function() {
    let cases = [
        ("iif(active, 'yes', 'no')", vec![json!("yes")]),
        ("iif(missing, 'yes', 'no')", vec![json!("no")]),
        ("iif(missing, 'yes')", vec![]),
        ("iif(active, id)", vec![json!("p1")]),
        // Only the chosen branch is evaluated, so the failing one does not matter.
        ("iif(true, 1, numbers.single())", vec![json!(1)]),
        (
            "name.first().iif(family.exists(), family, 'none')",
            vec![json!("Chalmers")],
        ),
    ];
    assert_table(&resource(), &cases);
}

#[test]
fn conversion_functions() {
    let cases = [
        ("'12'.toInteger() + 1", vec![json!(13)]),
        ("'1.5'.toDecimal()", vec![json!(1.5)]),
        ("'yes'.toBoolean()", vec![json!(true)]),
        ("12.toString()", vec![json!("12")]),
        ("true.toString()", vec![json!("true")]),
        ("@2020-01-02.toString()", vec![json!("2020-01-02")]),
        ("birthDate.toDate() < @1975", vec![json!(true)]),
        ("birthDate.toDateTime() is DateTime", vec![json!(true)]),
        ("'10:00'.toTime() < @T11:00", vec![json!(true)]),
        ("'x'.convertsToInteger()", vec![json!(false)]),
        ("'2020-01'.convertsToDate()", vec![json!(true)]),
        ("missing.toString()", vec![]),
    ];
    assert_table(&resource(), &cases);
}

#[test]
fn string_functions() {
    let cases = [
        ("name.family.startsWith('Chal')", vec![json!(true)]),
        ("name.family.endsWith('ers')", vec![json!(true)]),
        ("name.family.contains('alm')", vec![json!(true)]),
        ("name.family.lower()", vec![json!("chalmers")]),
        ("name.family.upper()", vec![json!("CHALMERS")]),
        ("name.family.length()", vec![json!(8)]),
        ("name.family.indexOf('m')", vec![json!(4)]),
        ("name.family.substring(0, 4)", vec![json!("Chal")]),
        ("name.family.replace('mers', 'k')", vec![json!("Chalk")]),
        ("'ab'.toChars()", vec![json!("a"), json!("b")]),
        ("missing.lower()", vec![]),
        ("name.family.startsWith(missing)", vec![]),
    ];
    assert_table(&resource(), &cases);
}

#[test]
fn math_functions() {
    let cases = [
        ("(-5).abs()", vec![json!(5)]),
        ("(-5.5).abs()", vec![json!(5.5)]),
        ("1.2.ceiling()", vec![json!(2)]),
        ("(-1.2).ceiling()", vec![json!(-1)]),
        ("1.8.floor()", vec![json!(1)]),
        ("1.8.truncate()", vec![json!(1)]),
        ("(-1.8).truncate()", vec![json!(-1)]),
        ("2.5.round()", vec![json!(3.0)]),
        ("1.23456.round(3)", vec![json!(1.235)]),
        ("7.round()", vec![json!(7)]),
        ("missing.abs()", vec![]),
    ];
    assert_table(&resource(), &cases);
}

#[test]
fn tree_navigation_functions() {
    let resource = json!({"resourceType": "Basic", "a": {"b": [1, 2]}, "_a": {}, "c": "x"});
    let cases = [
        ("children().count()", vec![json!(2)]),
        ("descendants().count()", vec![json!(4)]),
        ("a.children()", vec![json!(1), json!(2)]),
        ("descendants().ofType(Integer)", vec![json!(1), json!(2)]),
    ];
    assert_table(&resource, &cases);
}

#[test]
fn fhir_functions() {
    let cases = [
        ("birthDate.hasValue()", vec![json!(true)]),
        ("name.hasValue()", vec![json!(false)]),
        ("name.given.hasValue()", vec![json!(false)]),
        ("name.first().hasValue()", vec![json!(false)]),
        ("missing.hasValue()", vec![json!(false)]),
        ("active.trace('active')", vec![json!(true)]),
        (
            "_birthDate.extension('http://example.org/time').value",
            vec![json!("14:35")],
        ),
        ("'Patient/1'.resolve() is Patient", vec![json!(true)]),
    ];
    assert_table(&resource(), &cases);
}
