//! A named parameter store: parameters in registration order under the names Hugging Face
//! checkpoints use (e.g. `transformer.h.0.attn.c_attn.weight`).

use std::collections::HashMap;

use super::Var;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[derive(Default, Clone)]
pub struct ParamStore {
    names: Vec<String>,
    vars: Vec<Var>,
    index: HashMap<String, usize>,
}

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a new parameter (a leaf requiring grad) under `name`.
    pub fn add(&mut self, name: impl Into<String>, value: Tensor) -> Result<Var> {
        let var = Var::param(value);
        self.insert(name, var.clone())?;
        Ok(var)
    }

    /// Register an existing variable (e.g. a tied weight registered under one name).
    pub fn insert(&mut self, name: impl Into<String>, var: Var) -> Result<()> {
        let name = name.into();
        if self.index.contains_key(&name) {
            return Err(Error::msg(format!("parameter `{name}` registered twice")));
        }
        self.index.insert(name.clone(), self.vars.len());
        self.names.push(name);
        self.vars.push(var);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Var> {
        self.index.get(name).map(|&i| &self.vars[i])
    }

    /// The parameter `name`, or an error naming it.
    pub fn require(&self, name: &str) -> Result<&Var> {
        self.get(name)
            .ok_or_else(|| Error::msg(format!("no parameter named `{name}`")))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.names.iter().map(|s| s.as_str()).zip(self.vars.iter())
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.vars.iter().map(|v| v.value().numel()).sum()
    }

    pub fn zero_grad(&self) {
        self.vars.iter().for_each(|v| v.zero_grad());
    }
}
