export default (x) => Math.sqrt(x * x)
