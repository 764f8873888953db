//! The `#[activity]` wrappers: JSON input and output, errors, dispatch by name.

use crate::__private::{Registration, dispatch_activity};
use crate::TaskError;
use crate::activity;

#[activity]
fn square(n: u32) -> u32 {
    n * n
}

#[activity(name = "Divide")]
fn divide((a, b): (i32, i32)) -> Result<i32, String> {
    if b == 0 {
        return Err(format!("cannot divide {a} by zero"));
    }
    Ok(a / b)
}

#[activity]
fn greet(name: Option<String>) -> String {
    format!("hello, {}", name.as_deref().unwrap_or("world"))
}

#[activity]
fn quota() -> Result<(), TaskError> {
    Err(TaskError {
        details: Some(r#"{"limit":10}"#.into()),
        ..TaskError::new("QuotaExceeded", "10 calls a minute")
    })
}

const ALL: &[Registration] = &[
    __FNHOST_REGISTRATION_square,
    __FNHOST_REGISTRATION_divide,
    __FNHOST_REGISTRATION_greet,
    __FNHOST_REGISTRATION_quota,
];

fn call(name: &str, input: Option<&str>) -> Result<Option<String>, super::Failure> {
    dispatch_activity(ALL, name, input.map(Into::into))
}

#[test]
fn activities_read_and_write_json() {
    assert_eq!(call("square", Some("7")), Ok(Some("49".into())));
    assert_eq!(call("Divide", Some("[7,2]")), Ok(Some("3".into())));
    assert_eq!(call("greet", None), Ok(Some(r#""hello, world""#.into())));
    assert_eq!(
        call("greet", Some(r#""Ada""#)),
        Ok(Some(r#""hello, Ada""#.into()))
    );
    assert_eq!(
        call("quota", None).map_err(|f| f.error_type),
        Err("QuotaExceeded".into())
    );
}

#[test]
fn an_err_becomes_an_activity_error_with_its_text() {
    let error = call("Divide", Some("[7,0]")).unwrap_err();
    assert_eq!(
        error,
        super::failure("ActivityError", "cannot divide 7 by zero")
    );
}

#[test]
fn a_task_error_keeps_its_type_and_details() {
    let error = call("quota", None).unwrap_err();
    assert_eq!(error.error_type, "QuotaExceeded");
    assert_eq!(error.details.as_deref(), Some(r#"{"limit":10}"#));
}

#[test]
fn bad_input_is_invalid_input_naming_the_activity() {
    let error = call("square", Some(r#""seven""#)).unwrap_err();
    assert_eq!(error.error_type, "InvalidInput");
    assert!(error.message.contains("'square'") && error.message.contains("invalid type"));
    let error = call("square", None).unwrap_err();
    assert_eq!(error.error_type, "InvalidInput", "a u32 input is required");
}

#[test]
fn an_unknown_activity_is_function_not_found() {
    let error = call("cube", Some("2")).unwrap_err();
    assert_eq!(error.error_type, "FunctionNotFound");
    assert!(error.message.contains("'cube'"));
}
