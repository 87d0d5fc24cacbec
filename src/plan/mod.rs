//! [pure] What to do now, given what [`crate::decide`] says this node may serve: the step
//! between deciding and acting. (Growing: today it holds [`gate`], which node alone serves what
//! one node alone may hold.)

pub mod gate;
